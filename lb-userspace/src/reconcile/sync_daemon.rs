//! keepalived's `lvs_sync_daemon`: the kernel's IPVS connection-sync daemon follows one VRRP
//! instance. It runs as backup (receiving the master's connection table) and switches to
//! master while the instance is MASTER, so after a failover the new master's IPVS already
//! knows the established connections. Stopped at exit.

use std::collections::HashMap;

use tokio::sync::watch;
use tracing::{info, warn};

use crate::{
    ipvs::{
        IpvsClient,
        msg::{IP_VS_STATE_BACKUP, IP_VS_STATE_MASTER, SyncDaemonConfig},
    },
    model::SyncDaemon,
    vrrp::sync::MemberState,
};

fn config(d: &SyncDaemon, state: u32) -> SyncDaemonConfig {
    SyncDaemonConfig {
        state,
        interface: d.interface.clone(),
        sync_id: d.sync_id,
        maxlen: d.maxlen,
        group: d.group,
        port: d.port,
        ttl: d.ttl,
    }
}

/// Switches the daemon to `state` (master or backup), stopping the other.
fn switch(client: &IpvsClient, d: &SyncDaemon, state: u32) {
    let other = if state == IP_VS_STATE_MASTER {
        IP_VS_STATE_BACKUP
    } else {
        IP_VS_STATE_MASTER
    };
    // The other may not be running: ESRCH is expected.
    drop(client.del_daemon(&config(d, other)));
    match client.new_daemon(&config(d, state)) {
        Ok(()) => info!(
            interface = %d.interface,
            instance = %d.instance,
            role = if state == IP_VS_STATE_MASTER { "master" } else { "backup" },
            "IPVS sync daemon"
        ),
        Err(e) => warn!(error = %e, "starting the IPVS sync daemon"),
    }
}

/// Runs until `stopped` turns true: backup at first, master while the instance is MASTER.
pub async fn run(
    d: SyncDaemon,
    mut transitions: watch::Receiver<HashMap<String, MemberState>>,
    mut stopped: watch::Receiver<bool>,
) {
    let client = match IpvsClient::connect() {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "lvs_sync_daemon: no IPVS");
            return;
        }
    };
    let mut state = IP_VS_STATE_BACKUP;
    switch(&client, &d, state);
    loop {
        let wanted = match transitions.borrow_and_update().get(&d.instance) {
            Some(MemberState::Active) => IP_VS_STATE_MASTER,
            _ => IP_VS_STATE_BACKUP,
        };
        if wanted != state {
            state = wanted;
            switch(&client, &d, state);
        }
        tokio::select! {
            changed = transitions.changed() => if changed.is_err() { break },
            _ = stopped.wait_for(|s| *s) => break,
        }
    }
    drop(client.del_daemon(&config(&d, state)));
}
