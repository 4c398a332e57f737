/** The validated harness configuration. Durations are milliseconds. */
export interface WorkloadPort {
  port: number;
  name?: string;
  protocol?: 'TCP';
}

export interface ProbeSpec {
  name?: string;
  httpGet?: { port: number; path?: string; scheme?: 'HTTP' | 'HTTPS' };
  tcpSocket?: { port: number };
  exec?: { command: string[] };
  initialDelaySeconds?: number;
  periodSeconds?: number;
  timeoutSeconds?: number;
  successThreshold?: number;
  failureThreshold?: number;
}

export type PortSpec = number | string;

export interface HarnessConfig {
  workload: {
    group: string;
    namespace: string;
    nodeName: string;
    name: string;
    ips: string[];
    ports: Array<number | WorkloadPort>;
  };
  identity: {
    spiffeId: string;
    serverName: string;
    trustAnchorsFile: string;
    workloadApiSocket: string;
    expiryMargin: number;
  };
  spire: {
    mode: 'external' | 'managed';
    agentBinary: string;
    agentConfig: string;
    serverAddress: string;
    serverPort: number;
    trustDomain: string;
    trustBundleFile: string;
    joinTokenFile: string;
    dataDir: string;
    logLevel: 'debug' | 'info' | 'warn' | 'error';
  };
  proxy: {
    binary: string;
    user: string;
    group: string;
    inboundPort: number;
    outboundPort: number;
    adminPort: number;
    controlPort: number;
    destinationAddr: string;
    destinationName: string;
    policyAddr: string;
    policyName: string;
    logLevel: string;
    logFormat: 'plain' | 'json';
    shutdownGrace: number;
    extraEnv: Record<string, string>;
  };
  iptables: {
    enabled: boolean;
    backend: 'auto' | 'nft' | 'legacy';
    ipv6: 'auto' | 'on' | 'off';
    portsToRedirect: PortSpec[];
    ignoreInboundPorts: PortSpec[];
    redirectSsh: boolean;
    ignoreOutboundPorts: PortSpec[];
    ignoreInboundSubnets: string[];
    ignoreOutboundSubnets: string[];
    onStop: 'keep' | 'clean';
    resyncInterval: number;
  };
  control: {
    registrarAddress: string;
    registrarIdentity: string;
    heartbeatInterval: number;
  };
  probes: {
    workload: ProbeSpec[];
  };
  admin: {
    address: string;
    port: number;
    allowNonLoopback: boolean;
  };
  log: {
    level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';
    format: 'auto' | 'json' | 'pretty';
  };
}

/** Where an effective value came from, for `config show`. */
export type Origin = { source: 'default' } | { source: 'file'; path: string } | { source: 'env'; name: string } | { source: 'flag' };
