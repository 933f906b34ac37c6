# %preun of syncd.rpm ($1: 0 = erase, 1+ = upgrade). On erase: stops syncd (through
# systemd when it is PID 1, else through the init script) and unregisters it from boot.
# On upgrade it keeps running: %post restarts it on the new binaries.
if [ "$1" -eq 0 ]; then
    if [ -d /run/systemd/system ]; then
        systemctl --no-reload disable --now syncd.service >/dev/null 2>&1 || :
    else
        /etc/rc.d/init.d/syncd stop >/dev/null 2>&1 || :
        if command -v chkconfig >/dev/null 2>&1; then
            chkconfig --del syncd >/dev/null 2>&1 || :
        fi
    fi
fi
exit 0
