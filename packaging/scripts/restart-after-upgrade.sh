#!/bin/sh
# After an upgrade (the .deb's postinst, the .rpm's %posttrans): restart a running service
# on the new code, with the command given as arguments (deb-systemd-invoke or systemctl
# try-restart), but only once the new version accepts the configuration. If it refuses the
# file (a downgrade meets a key it does not know, an upgrade tightens a check), the service
# keeps running the version it started with, rules and proxy included, and this says what
# to fix; a restart would leave the machine without its proxy. Never fails the package
# operation.
#
# MESH_HARNESS_NO_RESTART=1 leaves the restart to whoever installs the package (the Ansible
# role restarts through its handler, once, and waits for /ready).
unit=mesh-harness.service
systemctl is-active --quiet "$unit" || exit 0

if ! problems=$(/usr/bin/mesh-harness config validate 2>&1); then
	{
		echo "mesh-harness: not restarting $unit: this version refuses its configuration, so it keeps running the version it started with (rules and proxy included):"
		printf '%s\n' "$problems" | sed 's/^/  /'
		echo "mesh-harness: fix /etc/mesh-harness/config.json until 'mesh-harness config validate' accepts it, then: systemctl restart mesh-harness"
	} >&2
	exit 0
fi
if [ -n "${MESH_HARNESS_NO_RESTART:-}" ]; then
	echo "mesh-harness: not restarting $unit (MESH_HARNESS_NO_RESTART is set): the new version runs from its next restart" >&2
	exit 0
fi
"$@" || echo "mesh-harness: restarting $unit failed: systemctl status mesh-harness; journalctl -u mesh-harness -p warning" >&2
exit 0
