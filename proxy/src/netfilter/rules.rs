//! kube-proxy's IPVS-mode iptables rules (`pkg/proxy/ipvs/proxier.go`:
//! `iptablesJumpChain`, `iptablesChains`, `ipsetWithIptablesChain`,
//! `writeIptablesRules`, `acceptIPVSTraffic`), built from the configuration
//! and the desired sets, and the `iptables-restore` input that installs them.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use ipnet::IpNet;
use ipvs_sys::{AddressFamily, Protocol};

use super::iptables::{
    AddrDir, Chain, CtState, InterfaceName, Match, OUR_CHAINS, Rule, Saved, SetFlags, Table, Target,
};
use crate::plan::LbOutFilter;
use crate::plan::{IpSets, SetKind, SetName};

/// How kube-proxy tells traffic from this cluster's pods apart
/// (`--detect-local-mode`); used on the `KUBE-CLUSTER-IP` rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LocalDetector {
    /// Not configured: the `KUBE-CLUSTER-IP` rule matches `src,dst`.
    #[default]
    None,
    /// `ClusterCIDR`: `! -s CIDR` with the cluster CIDR of the family (at
    /// most one per family).
    ClusterCidrs(Vec<IpNet>),
    /// `NodeCIDR`: `! -s CIDR` with the node's pod CIDR of the family (at
    /// most one per family).
    NodeCidrs(Vec<IpNet>),
    /// `BridgeInterface`: `! -i BRIDGE`.
    BridgeInterface(InterfaceName),
    /// `InterfaceNamePrefix`: `! -i PREFIX+`.
    InterfaceNamePrefix(InterfaceName),
}

impl LocalDetector {
    /// kube-proxy's `IfNotLocal()` for `family`, or `None` when the detector
    /// is not implemented for it.
    pub fn if_not_local(&self, family: AddressFamily) -> Option<Match> {
        match self {
            Self::None => None,
            Self::ClusterCidrs(cidrs) | Self::NodeCidrs(cidrs) => cidrs
                .iter()
                .find(|c| AddressFamily::of(&c.addr()) == family)
                .map(|net| Match::Source {
                    net: net.trunc(),
                    negate: true,
                }),
            Self::BridgeInterface(name) => Some(Match::InInterface {
                name: name.clone(),
                prefix: false,
                negate: true,
            }),
            Self::InterfaceNamePrefix(name) => Some(Match::InInterface {
                name: name.clone(),
                prefix: true,
                negate: true,
            }),
        }
    }
}

/// What shapes the rules beyond the desired sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetfilterConfig {
    /// The families this node proxies (one iptables program and one set
    /// family each). Default IPv4 only.
    pub families: Vec<AddressFamily>,
    /// `--masquerade-all`.
    pub masquerade_all: bool,
    /// `--iptables-masquerade-bit` / `--ipvs-masquerade-bit` (0–31, default
    /// 14 → mark `0x4000`).
    pub masquerade_bit: u8,
    /// `--detect-local-mode` and its CIDRs or interface.
    pub local_detector: LocalDetector,
    /// Whether `MASQUERADE --random-fully` is supported (see
    /// [`super::probe_random_fully`]).
    pub random_fully: bool,
}

impl Default for NetfilterConfig {
    fn default() -> Self {
        Self {
            families: vec![AddressFamily::Ipv4],
            masquerade_all: false,
            masquerade_bit: 14,
            local_detector: LocalDetector::None,
            random_fully: false,
        }
    }
}

/// A configuration that cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The bit is not in 0–31.
    #[error("masquerade bit {0} is not in 0..=31")]
    MasqueradeBit(u8),
    /// More than one local-detection CIDR for a family.
    #[error("more than one local-detection CIDR for {0:?}")]
    TooManyCidrs(AddressFamily),
    /// No family configured, or one twice.
    #[error("families must be IPv4 and/or IPv6, each once")]
    Families,
}

impl NetfilterConfig {
    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.masquerade_bit > 31 {
            return Err(ConfigError::MasqueradeBit(self.masquerade_bit));
        }
        let uniq: BTreeSet<_> = self.families.iter().collect();
        if self.families.is_empty() || uniq.len() != self.families.len() {
            return Err(ConfigError::Families);
        }
        if let LocalDetector::ClusterCidrs(c) | LocalDetector::NodeCidrs(c) = &self.local_detector {
            for family in [AddressFamily::Ipv4, AddressFamily::Ipv6] {
                if c.iter()
                    .filter(|n| AddressFamily::of(&n.addr()) == family)
                    .count()
                    > 1
                {
                    return Err(ConfigError::TooManyCidrs(family));
                }
            }
        }
        Ok(())
    }

    /// The masquerade mark, `1 << masquerade_bit`.
    pub fn masquerade_mark(&self) -> u32 {
        1u32 << (self.masquerade_bit & 31)
    }
}

/// A jump from a built-in chain into ours, with kube-proxy's comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JumpRule {
    /// Table.
    pub table: Table,
    /// Built-in chain.
    pub from: Chain,
    /// Our chain.
    pub to: Chain,
    /// Comment.
    pub comment: &'static str,
}

impl JumpRule {
    /// The rule: `-A FROM -m comment --comment "…" -j TO`.
    pub fn rule(&self) -> Rule {
        Rule::new(self.from, Target::Jump(self.to)).with(Match::Comment(self.comment))
    }
}

/// kube-proxy's `iptablesJumpChain`, in its order. Each is prepended when
/// missing, so on a clean node the last one of a chain ends up first.
pub const JUMPS: [JumpRule; 9] = [
    JumpRule {
        table: Table::Nat,
        from: Chain::Output,
        to: Chain::KubeServices,
        comment: "kubernetes service portals",
    },
    JumpRule {
        table: Table::Nat,
        from: Chain::Prerouting,
        to: Chain::KubeServices,
        comment: "kubernetes service portals",
    },
    JumpRule {
        table: Table::Nat,
        from: Chain::Postrouting,
        to: Chain::KubePostrouting,
        comment: "kubernetes postrouting rules",
    },
    JumpRule {
        table: Table::Filter,
        from: Chain::Forward,
        to: Chain::KubeForward,
        comment: "kubernetes forwarding rules",
    },
    JumpRule {
        table: Table::Filter,
        from: Chain::Input,
        to: Chain::KubeNodePort,
        comment: "kubernetes health check rules",
    },
    JumpRule {
        table: Table::Filter,
        from: Chain::Input,
        to: Chain::KubeProxyFirewall,
        comment: "kube-proxy firewall rules",
    },
    JumpRule {
        table: Table::Filter,
        from: Chain::Forward,
        to: Chain::KubeProxyFirewall,
        comment: "kube-proxy firewall rules",
    },
    JumpRule {
        table: Table::Filter,
        from: Chain::Input,
        to: Chain::KubeIpvsFilter,
        comment: "kubernetes ipvs access filter",
    },
    JumpRule {
        table: Table::Filter,
        from: Chain::Output,
        to: Chain::KubeIpvsOutFilter,
        comment: "kubernetes ipvs access filter",
    },
];

/// The rules of our chains for one family, in kube-proxy's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSet {
    /// The family.
    pub family: AddressFamily,
    /// `nat` rules.
    pub nat: Vec<Rule>,
    /// `filter` rules.
    pub filter: Vec<Rule>,
}

/// kube-proxy's `ipsetWithIptablesChain`: rules written only when their set
/// is not empty. (set, table, chain, flags, protocol, target)
const SET_RULES: [(SetKind, Table, Chain, SetFlags, Option<Protocol>, Target); 12] = [
    (
        SetKind::LoopBack,
        Table::Nat,
        Chain::KubePostrouting,
        SetFlags::DstDstSrc,
        None,
        Target::Masquerade {
            random_fully: false,
        },
    ),
    (
        SetKind::LoadBalancer,
        Table::Nat,
        Chain::KubeServices,
        SetFlags::DstDst,
        None,
        Target::Jump(Chain::KubeLoadBalancer),
    ),
    (
        SetKind::LoadBalancerLocal,
        Table::Nat,
        Chain::KubeLoadBalancer,
        SetFlags::DstDst,
        None,
        Target::Return,
    ),
    (
        SetKind::NodePortLocalTcp,
        Table::Nat,
        Chain::KubeNodePort,
        SetFlags::Dst,
        Some(Protocol::Tcp),
        Target::Return,
    ),
    (
        SetKind::NodePortTcp,
        Table::Nat,
        Chain::KubeNodePort,
        SetFlags::Dst,
        Some(Protocol::Tcp),
        Target::Jump(Chain::KubeMarkMasq),
    ),
    (
        SetKind::NodePortLocalUdp,
        Table::Nat,
        Chain::KubeNodePort,
        SetFlags::Dst,
        Some(Protocol::Udp),
        Target::Return,
    ),
    (
        SetKind::NodePortUdp,
        Table::Nat,
        Chain::KubeNodePort,
        SetFlags::Dst,
        Some(Protocol::Udp),
        Target::Jump(Chain::KubeMarkMasq),
    ),
    (
        SetKind::NodePortLocalSctpHash,
        Table::Nat,
        Chain::KubeNodePort,
        SetFlags::DstDst,
        Some(Protocol::Sctp),
        Target::Return,
    ),
    (
        SetKind::NodePortSctpHash,
        Table::Nat,
        Chain::KubeNodePort,
        SetFlags::DstDst,
        Some(Protocol::Sctp),
        Target::Jump(Chain::KubeMarkMasq),
    ),
    (
        SetKind::LoadBalancerFw,
        Table::Filter,
        Chain::KubeProxyFirewall,
        SetFlags::DstDst,
        None,
        Target::Jump(Chain::KubeSourceRangesFirewall),
    ),
    (
        SetKind::LoadBalancerSourceCidr,
        Table::Filter,
        Chain::KubeSourceRangesFirewall,
        SetFlags::DstDstSrc,
        None,
        Target::Return,
    ),
    (
        SetKind::LoadBalancerSourceIp,
        Table::Filter,
        Chain::KubeSourceRangesFirewall,
        SetFlags::DstDstSrc,
        None,
        Target::Return,
    ),
];

/// Builds kube-proxy's rules for `family` from the configuration, the
/// desired sets (in [`super::canonical_sets`] form: only their emptiness
/// matters) and the `KUBE-IPVS-OUT-FILTER` entries (those of other families
/// are ignored).
pub fn build_rules(
    config: &NetfilterConfig,
    family: AddressFamily,
    sets: &IpSets,
    lb_out_filters: &BTreeSet<LbOutFilter>,
) -> RuleSet {
    let set = |kind| SetName { kind, family };
    let nonempty = |kind| sets.get(&set(kind)).is_some_and(|s| !s.is_empty());
    let set_match = |kind, flags| Match::Set {
        set: set(kind),
        flags,
        negate: false,
    };
    let mark = config.masquerade_mark();
    let mut nat = Vec::new();
    let mut filter = Vec::new();

    // KUBE-SERVICES: dismiss connections from localhost early.
    let lo: IpNet = match family {
        AddressFamily::Ipv4 => {
            IpNet::V4(ipnet::Ipv4Net::new([127, 0, 0, 0].into(), 8).unwrap_or_default())
        }
        AddressFamily::Ipv6 => {
            IpNet::V6(ipnet::Ipv6Net::new(std::net::Ipv6Addr::LOCALHOST, 128).unwrap_or_default())
        }
    };
    nat.push(
        Rule::new(Chain::KubeServices, Target::Return).with(Match::Source {
            net: lo,
            negate: false,
        }),
    );

    for (kind, table, chain, flags, proto, target) in SET_RULES {
        if !nonempty(kind) {
            continue;
        }
        let mut rule = Rule::new(chain, target);
        if let Some(p) = proto {
            rule = rule.with(Match::Protocol(p));
        }
        rule = rule
            .with(Match::Comment(kind.comment()))
            .with(set_match(kind, flags));
        match table {
            Table::Nat => nat.push(rule),
            Table::Filter => filter.push(rule),
        }
    }

    if nonempty(SetKind::ClusterIp) {
        let base = Rule::new(Chain::KubeServices, Target::Jump(Chain::KubeMarkMasq))
            .with(Match::Comment(SetKind::ClusterIp.comment()));
        let detector = config.local_detector.if_not_local(family);
        let rule = if config.masquerade_all {
            base.with(set_match(SetKind::ClusterIp, SetFlags::DstDst))
        } else if let Some(not_local) = detector {
            base.with(set_match(SetKind::ClusterIp, SetFlags::DstDst))
                .with(not_local)
        } else {
            base.with(set_match(SetKind::ClusterIp, SetFlags::SrcDst))
        };
        nat.push(rule);
    }

    let external_ip_rules = |nat: &mut Vec<Rule>, kind: SetKind| {
        let head = Rule::new(Chain::KubeServices, Target::Accept)
            .with(Match::Comment(kind.comment()))
            .with(set_match(kind, SetFlags::DstDst));
        nat.push(head.clone().with(Match::PhysdevIsIn { negate: true }).with(
            Match::AddrTypeLocal {
                dir: AddrDir::Src,
                negate: true,
            },
        ));
        nat.push(head.with(Match::AddrTypeLocal {
            dir: AddrDir::Dst,
            negate: false,
        }));
    };
    if nonempty(SetKind::ExternalIp) {
        nat.push(
            Rule::new(Chain::KubeServices, Target::Jump(Chain::KubeMarkMasq))
                .with(Match::Comment(SetKind::ExternalIp.comment()))
                .with(set_match(SetKind::ExternalIp, SetFlags::DstDst)),
        );
        external_ip_rules(&mut nat, SetKind::ExternalIp);
    }
    if nonempty(SetKind::ExternalIpLocal) {
        external_ip_rules(&mut nat, SetKind::ExternalIpLocal);
    }

    nat.push(
        Rule::new(Chain::KubeServices, Target::Jump(Chain::KubeNodePort)).with(
            Match::AddrTypeLocal {
                dir: AddrDir::Dst,
                negate: false,
            },
        ),
    );
    nat.push(Rule::new(
        Chain::KubeLoadBalancer,
        Target::Jump(Chain::KubeMarkMasq),
    ));
    filter.push(Rule::new(Chain::KubeSourceRangesFirewall, Target::Drop));

    for f in lb_out_filters {
        if AddressFamily::of(&f.vip) != family {
            continue;
        }
        filter.push(
            Rule::new(Chain::KubeIpvsOutFilter, Target::Drop)
                .with(Match::SourceAddr(f.vip))
                .with(Match::Ipvs {
                    vaddr: f.vip,
                    vproto: f.protocol,
                    vport: f.port,
                }),
        );
    }

    // acceptIPVSTraffic: at the end of KUBE-SERVICES.
    for kind in [SetKind::ClusterIp, SetKind::LoadBalancer] {
        if nonempty(kind) {
            nat.push(
                Rule::new(Chain::KubeServices, Target::Accept)
                    .with(set_match(kind, SetFlags::DstDst)),
            );
        }
    }

    filter.push(
        Rule::new(Chain::KubeForward, Target::Accept)
            .with(Match::Comment("kubernetes forwarding rules"))
            .with(Match::Mark {
                value: mark,
                mask: mark,
                negate: false,
            }),
    );
    filter.push(
        Rule::new(Chain::KubeForward, Target::Accept)
            .with(Match::Comment("kubernetes forwarding conntrack rule"))
            .with(Match::CtState(&[CtState::Related, CtState::Established])),
    );
    filter.push(
        Rule::new(Chain::KubeNodePort, Target::Accept)
            .with(Match::Comment(SetKind::HealthCheckNodePort.comment()))
            .with(set_match(SetKind::HealthCheckNodePort, SetFlags::Dst)),
    );

    // KUBE-IPVS-FILTER (kubernetes#72236).
    for (kind, flags) in [
        (SetKind::LoadBalancer, SetFlags::DstDst),
        (SetKind::ClusterIp, SetFlags::DstDst),
        (SetKind::ExternalIp, SetFlags::DstDst),
        (SetKind::ExternalIpLocal, SetFlags::DstDst),
        (SetKind::HealthCheckNodePort, SetFlags::Dst),
    ] {
        filter.push(Rule::new(Chain::KubeIpvsFilter, Target::Return).with(set_match(kind, flags)));
    }
    filter.push(
        Rule::new(Chain::KubeIpvsFilter, Target::Reject)
            .with(Match::CtState(&[CtState::New]))
            .with(set_match(SetKind::IpvsIps, SetFlags::Dst)),
    );

    // KUBE-POSTROUTING and KUBE-MARK-MASQ.
    nat.push(
        Rule::new(Chain::KubePostrouting, Target::Return).with(Match::Mark {
            value: mark,
            mask: mark,
            negate: true,
        }),
    );
    nat.push(Rule::new(Chain::KubePostrouting, Target::MarkXor(mark)));
    nat.push(
        Rule::new(
            Chain::KubePostrouting,
            Target::Masquerade {
                random_fully: config.random_fully,
            },
        )
        .with(Match::Comment("kubernetes service traffic requiring SNAT")),
    );
    nat.push(Rule::new(Chain::KubeMarkMasq, Target::MarkOr(mark)));

    RuleSet {
        family,
        nat,
        filter,
    }
}

/// Which jump rules to fix in the built-in chains.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JumpPlan {
    /// Missing jumps, to insert at position 1 in [`JUMPS`] order.
    pub insert: Vec<JumpRule>,
    /// Extra copies of a jump, to delete (one entry per copy).
    pub delete: Vec<JumpRule>,
}

/// How often the exact jump rule appears in its built-in chain.
pub fn count_jump(saved: &Saved, jump: &JumpRule) -> usize {
    let words = jump.rule().spec_words();
    saved
        .table(jump.table)
        .map(|t| {
            t.rules_of(jump.from.name())
                .filter(|r| *r == words.as_slice())
                .count()
        })
        .unwrap_or(0)
}

/// Compares the jumps in `saved` with [`JUMPS`]: missing ones are inserted,
/// duplicates deleted (a jump present once is left where it is, as
/// kube-proxy's `-C` then `-I` does).
pub fn plan_jumps(saved: &Saved) -> JumpPlan {
    let mut plan = JumpPlan::default();
    for jump in JUMPS {
        match count_jump(saved, &jump) {
            0 => plan.insert.push(jump),
            1 => {}
            n => plan.delete.extend(std::iter::repeat_n(jump, n - 1)),
        }
    }
    plan
}

impl RuleSet {
    /// How far `saved` is from these rules in our chains: per chain, the
    /// difference between the rules it holds and the rules we write (a
    /// missing chain holds none). Counts rather than compares words, as
    /// `iptables-save` prints some targets differently from how we write
    /// them (`--or-mark` comes back as `--set-xmark`); a rule edited in
    /// place is rewritten all the same, just not counted.
    pub fn drift(&self, saved: &Saved) -> usize {
        let mut n = 0;
        for (table, rules) in [(Table::Nat, &self.nat), (Table::Filter, &self.filter)] {
            let held = saved.table(table);
            for (t, chain) in OUR_CHAINS {
                if t != table {
                    continue;
                }
                let want = rules.iter().filter(|r| r.chain == chain).count();
                let have = held.map_or(0, |h| h.rules_of(chain.name()).count());
                n += want.abs_diff(have);
            }
        }
        n
    }

    /// The `iptables-restore --noflush` input: per table our chain
    /// declarations (which create or flush just those chains), the jump
    /// fixes, our rules, `COMMIT`.
    pub fn render_restore(&self, jumps: &JumpPlan) -> String {
        let mut s = String::new();
        for (table, rules) in [(Table::Nat, &self.nat), (Table::Filter, &self.filter)] {
            let _ = writeln!(s, "*{}", table.name());
            for (t, chain) in OUR_CHAINS {
                if t == table {
                    let _ = writeln!(s, ":{} - [0:0]", chain.name());
                }
            }
            for j in jumps.delete.iter().filter(|j| j.table == table) {
                let _ = writeln!(s, "-D {} {}", j.from.name(), j.rule().spec().join(" "));
            }
            for j in jumps.insert.iter().filter(|j| j.table == table) {
                let _ = writeln!(s, "-I {} 1 {}", j.from.name(), j.rule().spec().join(" "));
            }
            for rule in rules {
                let _ = writeln!(s, "{rule}");
            }
            s.push_str("COMMIT\n");
        }
        s
    }
}

/// The `iptables-restore --noflush` input for `--cleanup`: delete every copy
/// of our jumps, then flush and delete those of our chains that exist.
/// `None` when nothing of ours is present.
pub fn render_cleanup(saved: &Saved) -> Option<String> {
    let mut s = String::new();
    for table in [Table::Nat, Table::Filter] {
        let Some(t) = saved.table(table) else {
            continue;
        };
        let mut body = String::new();
        for jump in JUMPS.iter().filter(|j| j.table == table) {
            for _ in 0..count_jump(saved, jump) {
                let _ = writeln!(
                    body,
                    "-D {} {}",
                    jump.from.name(),
                    jump.rule().spec().join(" ")
                );
            }
        }
        let present: Vec<Chain> = OUR_CHAINS
            .iter()
            .filter(|(tt, c)| *tt == table && t.has_chain(c.name()))
            .map(|(_, c)| *c)
            .collect();
        for c in &present {
            let _ = writeln!(body, "-F {}", c.name());
        }
        for c in &present {
            let _ = writeln!(body, "-X {}", c.name());
        }
        if !body.is_empty() {
            let _ = write!(s, "*{}\n{body}COMMIT\n", table.name());
        }
    }
    (!s.is_empty()).then_some(s)
}
