//! A synchronous IPVS client on neli's generic-netlink router: the only module that opens the
//! IPVS netlink socket. Kernel errors come back as [`IpvsError::Kernel`] with the errno.

use neli::{
    consts::{nl::NlmF, socket::NlFamily},
    err::RouterError,
    genl::{GenlAttrHandle, Genlmsghdr, GenlmsghdrBuilder, Nlattr},
    nl::{NlPayload, Nlmsghdr},
    router::synchronous::NlRouter,
    types::{Buffer, GenlBuffer},
    utils::Groups,
};

use super::msg::{
    Dest, DestListing, IPVS_GENL_NAME, IPVS_GENL_VERSION, IpvsCmd, IpvsCmdAttr, IpvsDaemonAttr,
    IpvsDestAttr, IpvsInfo, IpvsSvcAttr, Service, ServiceListing, SyncDaemonConfig, daemon_attr,
    dest_attr, parse_dest, parse_info, parse_service, parse_stats, service_attr, service_key_attr,
    timeout_attr,
};

type IpvsMsg = Genlmsghdr<IpvsCmd, IpvsCmdAttr>;

/// What went wrong talking to IPVS, naming the operation.
#[derive(Debug, thiserror::Error)]
pub enum IpvsError {
    /// The kernel has no IPVS (module not loaded, or not built).
    #[error("the kernel has no IPVS (generic netlink family {IPVS_GENL_NAME:?} not found)")]
    NotAvailable,
    /// The kernel refused the operation.
    #[error("{op}: kernel error {}: {}", errno_name(*.errno), std::io::Error::from_raw_os_error(*.errno))]
    Kernel {
        /// Operation.
        op: &'static str,
        /// Positive errno.
        errno: i32,
    },
    /// Netlink transport or decoding failed.
    #[error("{op}: netlink: {message}")]
    Netlink {
        /// Operation.
        op: &'static str,
        /// What neli said.
        message: String,
    },
}

fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::EEXIST => "EEXIST",
        libc::ENOENT => "ENOENT",
        libc::EINVAL => "EINVAL",
        libc::ENOMEM => "ENOMEM",
        libc::ESRCH => "ESRCH",
        libc::EPERM => "EPERM",
        libc::EBUSY => "EBUSY",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        _ => "errno",
    }
}

fn netlink<T, P>(op: &'static str) -> impl Fn(RouterError<T, P>) -> IpvsError
where
    T: std::fmt::Debug,
    P: std::fmt::Debug,
{
    move |e| match e {
        RouterError::Nlmsgerr(err) => IpvsError::Kernel {
            op,
            errno: -*err.error(),
        },
        other => IpvsError::Netlink {
            op,
            message: format!("{other:?}"),
        },
    }
}

fn ser(op: &'static str) -> impl Fn(neli::err::SerError) -> IpvsError {
    move |e| IpvsError::Netlink {
        op,
        message: e.to_string(),
    }
}

fn de(op: &'static str) -> impl Fn(neli::err::DeError) -> IpvsError {
    move |e| IpvsError::Netlink {
        op,
        message: e.to_string(),
    }
}

/// A connection to the kernel's IPVS in the current network namespace.
pub struct IpvsClient {
    router: NlRouter,
    family: u16,
}

impl std::fmt::Debug for IpvsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpvsClient")
            .field("family", &self.family)
            .finish_non_exhaustive()
    }
}

impl IpvsClient {
    /// Opens a generic-netlink socket and resolves the IPVS family.
    pub fn connect() -> Result<Self, IpvsError> {
        let (router, _multicast) = NlRouter::connect(NlFamily::Generic, None, Groups::empty())
            .map_err(|e| IpvsError::Netlink {
                op: "connect",
                message: e.to_string(),
            })?;
        let family = router
            .resolve_genl_family(IPVS_GENL_NAME)
            .map_err(|e| match e {
                RouterError::Nlmsgerr(err) if -*err.error() == libc::ENOENT => {
                    IpvsError::NotAvailable
                }
                RouterError::Msg(_) => IpvsError::NotAvailable,
                other => IpvsError::Netlink {
                    op: "resolve family",
                    message: format!("{other:?}"),
                },
            })?;
        Ok(Self { router, family })
    }

    /// Sends `cmd` with `attrs` and collects the replies (for dumps) or the ack.
    fn request(
        &self,
        op: &'static str,
        cmd: IpvsCmd,
        flags: NlmF,
        attrs: Vec<Nlattr<IpvsCmdAttr, Buffer>>,
    ) -> Result<Vec<Nlmsghdr<u16, IpvsMsg>>, IpvsError> {
        let msg = GenlmsghdrBuilder::default()
            .cmd(cmd)
            .version(IPVS_GENL_VERSION)
            .attrs(attrs.into_iter().collect::<GenlBuffer<_, _>>())
            .build()
            .map_err(|e| IpvsError::Netlink {
                op,
                message: e.to_string(),
            })?;
        let replies = self
            .router
            .send::<u16, IpvsMsg, u16, IpvsMsg>(self.family, flags, NlPayload::Payload(msg))
            .map_err(netlink(op))?;
        replies.map(|r| r.map_err(netlink(op))).collect()
    }

    /// A GET command with a single answer, read by `read`.
    fn query<T>(
        &self,
        op: &'static str,
        cmd: IpvsCmd,
        read: impl FnOnce(&GenlAttrHandle<'_, IpvsCmdAttr>) -> Result<T, neli::err::DeError>,
    ) -> Result<T, IpvsError> {
        let replies = self.request(op, cmd, NlmF::empty(), Vec::new())?;
        let reply = replies
            .iter()
            .find_map(|r| r.get_payload())
            .ok_or(IpvsError::Netlink {
                op,
                message: "no reply".to_owned(),
            })?;
        read(&reply.attrs().get_attr_handle()).map_err(de(op))
    }

    /// `IPVS_CMD_GET_INFO`: version and connection table size.
    pub fn info(&self) -> Result<IpvsInfo, IpvsError> {
        self.query("IPVS_CMD_GET_INFO", IpvsCmd::GetInfo, parse_info)
    }

    /// `IPVS_CMD_NEW_SERVICE`.
    pub fn new_service(&self, svc: &Service) -> Result<(), IpvsError> {
        const OP: &str = "IPVS_CMD_NEW_SERVICE";
        self.request(
            OP,
            IpvsCmd::NewService,
            NlmF::ACK,
            vec![service_attr(svc).map_err(ser(OP))?],
        )?;
        Ok(())
    }

    /// `IPVS_CMD_DEL_SERVICE` (its destinations go with it).
    pub fn del_service(&self, svc: &Service) -> Result<(), IpvsError> {
        const OP: &str = "IPVS_CMD_DEL_SERVICE";
        self.request(
            OP,
            IpvsCmd::DelService,
            NlmF::ACK,
            vec![service_key_attr(svc).map_err(ser(OP))?],
        )?;
        Ok(())
    }

    /// A destination command: the service's key and the destination, acknowledged.
    fn dest_command(
        &self,
        op: &'static str,
        cmd: IpvsCmd,
        svc: &Service,
        dest: &Dest,
    ) -> Result<(), IpvsError> {
        let attrs = vec![
            service_key_attr(svc).map_err(ser(op))?,
            dest_attr(dest).map_err(ser(op))?,
        ];
        self.request(op, cmd, NlmF::ACK, attrs)?;
        Ok(())
    }

    /// `IPVS_CMD_NEW_DEST` under `svc`.
    pub fn new_dest(&self, svc: &Service, dest: &Dest) -> Result<(), IpvsError> {
        self.dest_command("IPVS_CMD_NEW_DEST", IpvsCmd::NewDest, svc, dest)
    }

    /// `IPVS_CMD_SET_SERVICE`: new settings for an existing service.
    pub fn set_service(&self, svc: &Service) -> Result<(), IpvsError> {
        const OP: &str = "IPVS_CMD_SET_SERVICE";
        self.request(
            OP,
            IpvsCmd::SetService,
            NlmF::ACK,
            vec![service_attr(svc).map_err(ser(OP))?],
        )?;
        Ok(())
    }

    /// `IPVS_CMD_SET_DEST`: new weight, thresholds or forwarding for a destination, in place.
    pub fn set_dest(&self, svc: &Service, dest: &Dest) -> Result<(), IpvsError> {
        self.dest_command("IPVS_CMD_SET_DEST", IpvsCmd::SetDest, svc, dest)
    }

    /// `IPVS_CMD_DEL_DEST`.
    pub fn del_dest(&self, svc: &Service, dest: &Dest) -> Result<(), IpvsError> {
        self.dest_command("IPVS_CMD_DEL_DEST", IpvsCmd::DelDest, svc, dest)
    }

    /// `IPVS_CMD_SET_CONFIG`: connection timeouts in seconds (tcp, tcpfin, udp); 0 leaves one
    /// as it is.
    pub fn set_timeouts(&self, tcp: u32, tcpfin: u32, udp: u32) -> Result<(), IpvsError> {
        const OP: &str = "IPVS_CMD_SET_CONFIG";
        let attrs = vec![
            timeout_attr(IpvsCmdAttr::TimeoutTcp, tcp).map_err(ser(OP))?,
            timeout_attr(IpvsCmdAttr::TimeoutTcpFin, tcpfin).map_err(ser(OP))?,
            timeout_attr(IpvsCmdAttr::TimeoutUdp, udp).map_err(ser(OP))?,
        ];
        self.request(OP, IpvsCmd::SetConfig, NlmF::ACK, attrs)?;
        Ok(())
    }

    /// `IPVS_CMD_GET_CONFIG`: the connection timeouts (tcp, tcpfin, udp) in seconds.
    pub fn timeouts(&self) -> Result<(u32, u32, u32), IpvsError> {
        self.query("IPVS_CMD_GET_CONFIG", IpvsCmd::GetConfig, |attrs| {
            let get = |a| attrs.get_attr_payload_as::<u32>(a);
            Ok((
                get(IpvsCmdAttr::TimeoutTcp)?,
                get(IpvsCmdAttr::TimeoutTcpFin)?,
                get(IpvsCmdAttr::TimeoutUdp)?,
            ))
        })
    }

    /// `IPVS_CMD_NEW_DAEMON`: starts a connection-sync daemon.
    pub fn new_daemon(&self, d: &SyncDaemonConfig) -> Result<(), IpvsError> {
        const OP: &str = "IPVS_CMD_NEW_DAEMON";
        let attrs = vec![daemon_attr(d, true).map_err(ser(OP))?];
        self.request(OP, IpvsCmd::NewDaemon, NlmF::ACK, attrs)?;
        Ok(())
    }

    /// `IPVS_CMD_DEL_DAEMON`: stops the daemon of `d.state`.
    pub fn del_daemon(&self, d: &SyncDaemonConfig) -> Result<(), IpvsError> {
        const OP: &str = "IPVS_CMD_DEL_DAEMON";
        let attrs = vec![daemon_attr(d, false).map_err(ser(OP))?];
        self.request(OP, IpvsCmd::DelDaemon, NlmF::ACK, attrs)?;
        Ok(())
    }

    /// `IPVS_CMD_GET_DAEMON`: the running daemons as (state, interface, sync id).
    pub fn daemons(&self) -> Result<Vec<(u32, String, u32)>, IpvsError> {
        const OP: &str = "IPVS_CMD_GET_DAEMON";
        let replies = self.request(OP, IpvsCmd::GetDaemon, NlmF::DUMP, Vec::new())?;
        let mut daemons = Vec::new();
        for reply in replies.iter().filter_map(|r| r.get_payload()) {
            let attrs = reply.attrs().get_attr_handle();
            let d = attrs
                .get_nested_attributes::<IpvsDaemonAttr>(IpvsCmdAttr::Daemon)
                .map_err(de(OP))?;
            daemons.push((
                d.get_attr_payload_as::<u32>(IpvsDaemonAttr::State)
                    .map_err(de(OP))?,
                d.get_attr_payload_as_with_len::<String>(IpvsDaemonAttr::McastIfn)
                    .map_err(de(OP))?,
                d.get_attr_payload_as::<u32>(IpvsDaemonAttr::SyncId)
                    .unwrap_or(0),
            ));
        }
        Ok(daemons)
    }

    /// `IPVS_CMD_FLUSH`: every service and destination goes.
    pub fn flush(&self) -> Result<(), IpvsError> {
        const OP: &str = "IPVS_CMD_FLUSH";
        self.request(OP, IpvsCmd::Flush, NlmF::ACK, Vec::new())?;
        Ok(())
    }

    /// `IPVS_CMD_GET_SERVICE` dump: every service.
    pub fn services(&self) -> Result<Vec<Service>, IpvsError> {
        Ok(self.service_dump()?.into_iter().map(|(s, _)| s).collect())
    }

    /// Every service with its destinations and their counters (`ipvsadm -Ln --stats`).
    pub fn listing(&self) -> Result<Vec<ServiceListing>, IpvsError> {
        self.service_dump()?
            .into_iter()
            .map(|(service, stats)| {
                let dests = self.dest_listing(&service)?;
                Ok(ServiceListing {
                    service,
                    stats,
                    dests,
                })
            })
            .collect()
    }

    /// The `IPVS_CMD_GET_SERVICE` dump: each service with its counters.
    fn service_dump(&self) -> Result<Vec<(Service, super::msg::Stats)>, IpvsError> {
        const OP: &str = "IPVS_CMD_GET_SERVICE";
        let replies = self.request(OP, IpvsCmd::GetService, NlmF::DUMP, Vec::new())?;
        let mut services = Vec::new();
        for reply in replies.iter().filter_map(|r| r.get_payload()) {
            let attrs = reply.attrs().get_attr_handle();
            let svc = attrs
                .get_nested_attributes::<IpvsSvcAttr>(IpvsCmdAttr::Service)
                .map_err(de(OP))?;
            let stats = parse_stats(
                svc.get_nested_attributes(IpvsSvcAttr::Stats64).ok(),
                svc.get_nested_attributes(IpvsSvcAttr::Stats).ok(),
            );
            services.push((parse_service(&svc).map_err(de(OP))?, stats));
        }
        Ok(services)
    }

    fn dest_listing(&self, svc: &Service) -> Result<Vec<DestListing>, IpvsError> {
        const OP: &str = "IPVS_CMD_GET_DEST";
        let key = service_key_attr(svc).map_err(ser(OP))?;
        let replies = self.request(OP, IpvsCmd::GetDest, NlmF::DUMP, vec![key])?;
        let mut dests = Vec::new();
        for reply in replies.iter().filter_map(|r| r.get_payload()) {
            let attrs = reply.attrs().get_attr_handle();
            let d = attrs
                .get_nested_attributes::<IpvsDestAttr>(IpvsCmdAttr::Dest)
                .map_err(de(OP))?;
            let count = |a| d.get_attr_payload_as::<u32>(a).unwrap_or(0);
            dests.push(DestListing {
                dest: parse_dest(&d, svc.addr).map_err(de(OP))?,
                active_conns: count(IpvsDestAttr::ActiveConns),
                inactive_conns: count(IpvsDestAttr::InactConns),
                persist_conns: count(IpvsDestAttr::PersistConns),
                stats: parse_stats(
                    d.get_nested_attributes(IpvsDestAttr::Stats64).ok(),
                    d.get_nested_attributes(IpvsDestAttr::Stats).ok(),
                ),
            });
        }
        Ok(dests)
    }

    /// `IPVS_CMD_GET_DEST` dump: the destinations of `svc`.
    pub fn dests(&self, svc: &Service) -> Result<Vec<Dest>, IpvsError> {
        Ok(self
            .dest_listing(svc)?
            .into_iter()
            .map(|d| d.dest)
            .collect())
    }
}
