//! Addresses on `kube-ipvs0`: bind what the plan wants, unbind the rest.
//! Everything on kube-ipvs0 is ours (the link is), so stale addresses there
//! are removed; addresses on other links are never touched.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipvs_sys::rtnl::{AddrOp, Address, RtnlClient};
use ipvs_sys::{Error, ErrorKind};

/// The dummy link that holds service addresses.
pub const DUMMY_LINK: &str = "kube-ipvs0";

/// The address changes that take `current` to `desired` on link `index`.
pub fn diff(index: u32, current: &BTreeSet<IpAddr>, desired: &BTreeSet<IpAddr>) -> Vec<AddrOp> {
    let add = desired
        .difference(current)
        .map(|ip| AddrOp::Add(Address::host(index, *ip)));
    let del = current
        .difference(desired)
        .map(|ip| AddrOp::Delete(Address::host(index, *ip)));
    add.chain(del).collect()
}

/// What one address sync did.
#[derive(Debug, Default)]
pub struct AddressReport {
    /// Addresses bound.
    pub added: usize,
    /// Addresses unbound.
    pub removed: usize,
    /// Changes that failed.
    pub failed: Vec<Error>,
}

/// Keeps `kube-ipvs0` and its addresses in shape.
pub struct AddressReconciler {
    rtnl: RtnlClient,
}

impl AddressReconciler {
    /// Opens the rtnetlink socket.
    pub fn open() -> Result<Self, Error> {
        Ok(Self {
            rtnl: RtnlClient::open()?,
        })
    }

    /// The addresses currently on `kube-ipvs0` (none if it does not exist).
    pub fn current(&mut self) -> Result<(Option<u32>, BTreeSet<IpAddr>), Error> {
        match self.rtnl.link(DUMMY_LINK)? {
            Some(link) => {
                let addrs = self.rtnl.link_addresses(link.index)?;
                Ok((
                    Some(link.index),
                    addrs.into_iter().map(|a| a.addr).collect(),
                ))
            }
            None => Ok((None, BTreeSet::new())),
        }
    }

    /// Every local address on other links (for NodePorts and to tell whether
    /// an external IP is already local).
    pub fn node_addresses(&mut self) -> Result<BTreeSet<IpAddr>, Error> {
        let dummy = self.rtnl.link(DUMMY_LINK)?.map(|l| l.index);
        Ok(self
            .rtnl
            .addresses()?
            .into_iter()
            .filter(|a| Some(a.index) != dummy)
            .map(|a| a.addr)
            .collect())
    }

    /// Ensures the link exists and holds exactly `desired`.
    pub fn sync(&mut self, desired: &BTreeSet<IpAddr>) -> Result<AddressReport, Error> {
        self.sync_filtered(desired, |_| true)
    }

    /// Ensures the link exists and binds the addresses of `desired` it lacks,
    /// removing nothing. A sync binds first, reconciles IPVS (whose ownership
    /// test needs the stale addresses still bound), then unbinds.
    pub fn bind_missing(&mut self, desired: &BTreeSet<IpAddr>) -> Result<AddressReport, Error> {
        self.sync_filtered(desired, |op| matches!(op, AddrOp::Add(_)))
    }

    /// Unbinds the addresses on the link that `desired` does not have.
    pub fn unbind_stale(&mut self, desired: &BTreeSet<IpAddr>) -> Result<AddressReport, Error> {
        self.sync_filtered(desired, |op| matches!(op, AddrOp::Delete(_)))
    }

    fn sync_filtered(
        &mut self,
        desired: &BTreeSet<IpAddr>,
        keep: impl Fn(&AddrOp) -> bool,
    ) -> Result<AddressReport, Error> {
        let link = self.rtnl.ensure_dummy(DUMMY_LINK)?;
        let current: BTreeSet<IpAddr> = self
            .rtnl
            .link_addresses(link.index)?
            .into_iter()
            .map(|a| a.addr)
            .collect();
        let ops: Vec<AddrOp> = diff(link.index, &current, desired)
            .into_iter()
            .filter(|op| keep(op))
            .collect();
        let mut report = AddressReport::default();
        for (op, r) in ops.iter().zip(self.rtnl.apply_addresses(&ops)?) {
            match (op, r) {
                (AddrOp::Add(_), Ok(())) => report.added += 1,
                (AddrOp::Delete(_), Ok(())) => report.removed += 1,
                // Raced with someone else doing the same: the outcome holds.
                (AddrOp::Add(_), Err(e)) if e.kind() == ErrorKind::Exists => {}
                (AddrOp::Delete(_), Err(e)) if e.kind() == ErrorKind::NoSuchAddress => {}
                (_, Err(e)) => report.failed.push(e),
            }
        }
        Ok(report)
    }

    /// Deletes `kube-ipvs0` (for `--cleanup`); no error if it is absent.
    pub fn remove_link(&mut self) -> Result<(), Error> {
        if let Some(link) = self.rtnl.link(DUMMY_LINK)? {
            self.rtnl.delete_link(link.index)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_adds_missing_and_removes_stale_only() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let current: BTreeSet<_> = [ip("10.96.0.1"), ip("10.96.0.2")].into();
        let desired: BTreeSet<_> = [ip("10.96.0.2"), ip("fd00::1")].into();
        assert_eq!(
            diff(7, &current, &desired),
            vec![
                AddrOp::Add(Address::host(7, ip("fd00::1"))),
                AddrOp::Delete(Address::host(7, ip("10.96.0.1"))),
            ]
        );
        assert!(diff(7, &desired, &desired).is_empty());
    }
}
