/**
 * What the development proxy answers in place of a destination it cannot reach (an outbound
 * connection; an inbound one to a port without a workload), followed by the original
 * destination it read from the redirected connection: the playground and the tests read it.
 */
export const OUTBOUND_MARKER = 'mesh-dev-proxy outbound';
export const INBOUND_MARKER = 'mesh-dev-proxy inbound';
