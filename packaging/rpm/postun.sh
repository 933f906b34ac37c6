# %postun of syncd.rpm ($1: 0 = erase, 1+ = upgrade). Tells systemd its unit changed or is
# gone; on upgrade restarts syncd on the new binaries if (and only if) it was running. The
# state and log directories are owned by the package: rpm removes them when empty and
# keeps them (with the operator's data) otherwise, as rpm packages do.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -ge 1 ]; then
    if [ -d /run/systemd/system ]; then
        systemctl try-restart syncd.service >/dev/null 2>&1 || :
    else
        /etc/rc.d/init.d/syncd condrestart >/dev/null 2>&1 || :
    fi
else
    rm -f /var/lock/subsys/syncd
fi
exit 0
