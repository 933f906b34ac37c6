# %post of syncd.rpm ($1: 1 = install, 2+ = upgrade). Creates the state and log
# directories, applies syncd's own sysctl file (never `sysctl --system`; skipped with
# SYNCD_NO_SYSCTL=1), registers the service for boot without starting it: the shipped
# config is an example that must be edited first. (The restart on upgrade is in %postun.)
install -d -m 0750 /var/lib/syncd /var/log/syncd
sysctl_file=/etc/sysctl.d/90-syncd.conf
if [ "${SYNCD_NO_SYSCTL:-}" != 1 ] && [ -r "$sysctl_file" ]; then
    if [ -x /usr/lib/systemd/systemd-sysctl ]; then
        /usr/lib/systemd/systemd-sysctl "$sysctl_file" >/dev/null 2>&1 || :
    elif command -v sysctl >/dev/null 2>&1; then
        sysctl -q -p "$sysctl_file" >/dev/null 2>&1 || :
    fi
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -eq 1 ]; then
        systemctl enable syncd.service >/dev/null 2>&1 || :
    fi
elif command -v chkconfig >/dev/null 2>&1; then
    chkconfig --add syncd >/dev/null 2>&1 || :
fi
exit 0
