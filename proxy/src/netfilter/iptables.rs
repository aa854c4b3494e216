//! iptables rules as typed values, rendered into `iptables-restore` input,
//! and a reader for `iptables-save` output.
//!
//! Every value that ends up in the text is typed: addresses are [`IpAddr`] /
//! [`IpNet`], ports `u16`, set names [`SetName`], chain names [`Chain`],
//! comments `&'static str` (quoted by [`quote`]), interface names
//! [`InterfaceName`] (validated).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use ipvs_sys::{AddressFamily, Protocol};

use super::sets::protocol_keyword;
use crate::plan::SetName;

/// An iptables table we write to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// `nat`.
    Nat,
    /// `filter`.
    Filter,
}

impl Table {
    /// The table's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Nat => "nat",
            Self::Filter => "filter",
        }
    }
}

/// A chain: a built-in one we add jumps to, or one of kube-proxy's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Chain {
    /// Built-in `PREROUTING`.
    Prerouting,
    /// Built-in `INPUT`.
    Input,
    /// Built-in `FORWARD`.
    Forward,
    /// Built-in `OUTPUT`.
    Output,
    /// Built-in `POSTROUTING`.
    Postrouting,
    /// `KUBE-SERVICES` (nat).
    KubeServices,
    /// `KUBE-POSTROUTING` (nat).
    KubePostrouting,
    /// `KUBE-NODE-PORT` (nat and filter).
    KubeNodePort,
    /// `KUBE-LOAD-BALANCER` (nat).
    KubeLoadBalancer,
    /// `KUBE-MARK-MASQ` (nat).
    KubeMarkMasq,
    /// `KUBE-FORWARD` (filter).
    KubeForward,
    /// `KUBE-PROXY-FIREWALL` (filter).
    KubeProxyFirewall,
    /// `KUBE-SOURCE-RANGES-FIREWALL` (filter).
    KubeSourceRangesFirewall,
    /// `KUBE-IPVS-FILTER` (filter; kubernetes#72236).
    KubeIpvsFilter,
    /// `KUBE-IPVS-OUT-FILTER` (filter; kubernetes#119656).
    KubeIpvsOutFilter,
    /// `FLANNEL-POSTRTG` (nat): the overlay's masquerade rules.
    FlannelPostrtg,
    /// `FLANNEL-FWD` (filter): the overlay's forward accepts.
    FlannelFwd,
}

impl Chain {
    /// The chain's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Prerouting => "PREROUTING",
            Self::Input => "INPUT",
            Self::Forward => "FORWARD",
            Self::Output => "OUTPUT",
            Self::Postrouting => "POSTROUTING",
            Self::KubeServices => "KUBE-SERVICES",
            Self::KubePostrouting => "KUBE-POSTROUTING",
            Self::KubeNodePort => "KUBE-NODE-PORT",
            Self::KubeLoadBalancer => "KUBE-LOAD-BALANCER",
            Self::KubeMarkMasq => "KUBE-MARK-MASQ",
            Self::KubeForward => "KUBE-FORWARD",
            Self::KubeProxyFirewall => "KUBE-PROXY-FIREWALL",
            Self::KubeSourceRangesFirewall => "KUBE-SOURCE-RANGES-FIREWALL",
            Self::KubeIpvsFilter => "KUBE-IPVS-FILTER",
            Self::KubeIpvsOutFilter => "KUBE-IPVS-OUT-FILTER",
            Self::FlannelPostrtg => "FLANNEL-POSTRTG",
            Self::FlannelFwd => "FLANNEL-FWD",
        }
    }

    /// Whether this is a built-in chain (we only ever add jumps to those).
    pub fn is_builtin(self) -> bool {
        matches!(
            self,
            Self::Prerouting | Self::Input | Self::Forward | Self::Output | Self::Postrouting
        )
    }
}

/// Our chains per table, in kube-proxy's order (`iptablesChains`).
pub const OUR_CHAINS: [(Table, Chain); 11] = [
    (Table::Nat, Chain::KubeServices),
    (Table::Nat, Chain::KubePostrouting),
    (Table::Nat, Chain::KubeNodePort),
    (Table::Nat, Chain::KubeLoadBalancer),
    (Table::Nat, Chain::KubeMarkMasq),
    (Table::Filter, Chain::KubeForward),
    (Table::Filter, Chain::KubeNodePort),
    (Table::Filter, Chain::KubeProxyFirewall),
    (Table::Filter, Chain::KubeSourceRangesFirewall),
    (Table::Filter, Chain::KubeIpvsFilter),
    (Table::Filter, Chain::KubeIpvsOutFilter),
];

/// A network-interface name from configuration: 1–15 bytes of
/// `[A-Za-z0-9_.-]` (what the kernel allows minus `/`, `:` and whitespace).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InterfaceName(String);

/// An interface name that is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid interface name {0:?}")]
pub struct InvalidInterfaceName(pub String);

impl InterfaceName {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<Self, InvalidInterfaceName> {
        let ok = !name.is_empty()
            && name.len() <= 15
            && !name.starts_with('-')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if ok {
            Ok(Self(name.to_owned()))
        } else {
            Err(InvalidInterfaceName(name.to_owned()))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The direction flags of an ipset match (`--match-set NAME FLAGS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SetFlags {
    /// `dst`.
    Dst,
    /// `dst,dst`.
    DstDst,
    /// `src,dst`.
    SrcDst,
    /// `dst,dst,src`.
    DstDstSrc,
}

impl SetFlags {
    /// The flags' text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dst => "dst",
            Self::DstDst => "dst,dst",
            Self::SrcDst => "src,dst",
            Self::DstDstSrc => "dst,dst,src",
        }
    }
}

/// Source or destination, for `-m addrtype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AddrDir {
    /// `--src-type`.
    Src,
    /// `--dst-type`.
    Dst,
}

/// A conntrack state for `-m conntrack --ctstate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CtState {
    /// `NEW`.
    New,
    /// `RELATED`.
    Related,
    /// `ESTABLISHED`.
    Established,
}

impl CtState {
    fn as_str(self) -> &'static str {
        match self {
            Self::New => "NEW",
            Self::Related => "RELATED",
            Self::Established => "ESTABLISHED",
        }
    }
}

/// One match of a rule, rendered in the order given.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Match {
    /// `[!] -s NET`, printed with its prefix length (`127.0.0.0/8`,
    /// `::1/128`).
    Source {
        /// The network.
        net: IpNet,
        /// `!`.
        negate: bool,
    },
    /// `-s ADDR`, a bare address (kube-proxy's `KUBE-IPVS-OUT-FILTER` rules).
    SourceAddr(IpAddr),
    /// `[!] -d NET` (the overlay's masquerade rules).
    Destination {
        /// The network.
        net: IpNet,
        /// `!`.
        negate: bool,
    },
    /// `[!] -i NAME` (`NAME+` for a prefix).
    InInterface {
        /// The interface.
        name: InterfaceName,
        /// Match every interface whose name starts with `name`.
        prefix: bool,
        /// `!`.
        negate: bool,
    },
    /// `-p tcp|udp|sctp`.
    Protocol(Protocol),
    /// `-m comment --comment "TEXT"`.
    Comment(&'static str),
    /// `-m set [!] --match-set NAME FLAGS`.
    Set {
        /// The set.
        set: SetName,
        /// Direction flags.
        flags: SetFlags,
        /// `!`.
        negate: bool,
    },
    /// `-m mark [!] --mark VALUE/MASK` (printed `%#08x` like kube-proxy).
    Mark {
        /// Value.
        value: u32,
        /// Mask.
        mask: u32,
        /// `!`.
        negate: bool,
    },
    /// `-m addrtype [!] --src-type|--dst-type LOCAL`.
    AddrTypeLocal {
        /// Which address.
        dir: AddrDir,
        /// `!`.
        negate: bool,
    },
    /// `-m physdev ! --physdev-is-in` (`negate: true`) or `--physdev-is-in`.
    PhysdevIsIn {
        /// `!`.
        negate: bool,
    },
    /// `-m conntrack --ctstate S[,S…]`.
    CtState(&'static [CtState]),
    /// `-m ipvs --vaddr ADDR --vproto PROTO --vport PORT`.
    Ipvs {
        /// Virtual address.
        vaddr: IpAddr,
        /// Protocol.
        vproto: Protocol,
        /// Port.
        vport: u16,
    },
}

/// What a rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// `-j CHAIN`.
    Jump(Chain),
    /// `-j ACCEPT`.
    Accept,
    /// `-j DROP`.
    Drop,
    /// `-j RETURN`.
    Return,
    /// `-j REJECT`.
    Reject,
    /// `-j MASQUERADE [--random-fully]`.
    Masquerade {
        /// `--random-fully`.
        random_fully: bool,
    },
    /// `-j MARK --or-mark VALUE`.
    MarkOr(u32),
    /// `-j MARK --xor-mark VALUE`.
    MarkXor(u32),
}

/// One rule of one chain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    /// The chain it is appended to.
    pub chain: Chain,
    /// Its matches, in order.
    pub matches: Vec<Match>,
    /// Its target.
    pub target: Target,
}

/// `%#08x`, kube-proxy's mark format (`0x004000`).
pub fn format_mark(value: u32) -> String {
    format!("{value:#08x}")
}

/// Quotes `text` for iptables-restore: wrapped in double quotes, with `\`
/// and `"` escaped. Newlines cannot be represented and are replaced by
/// spaces.
pub fn quote(text: &str) -> String {
    let mut s = String::with_capacity(text.len() + 2);
    s.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                s.push('\\');
                s.push(c);
            }
            '\n' | '\r' => s.push(' '),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

impl Match {
    fn push_args(&self, out: &mut Vec<String>, quoted: bool) {
        let mut push = |s: &str| out.push(s.to_owned());
        match self {
            Self::Source { net, negate } => {
                if *negate {
                    push("!");
                }
                push("-s");
                push(&net.to_string());
            }
            Self::SourceAddr(addr) => {
                push("-s");
                push(&addr.to_string());
            }
            Self::Destination { net, negate } => {
                if *negate {
                    push("!");
                }
                push("-d");
                push(&net.to_string());
            }
            Self::InInterface {
                name,
                prefix,
                negate,
            } => {
                if *negate {
                    push("!");
                }
                push("-i");
                if *prefix {
                    push(&format!("{}+", name.as_str()));
                } else {
                    push(name.as_str());
                }
            }
            Self::Protocol(p) => {
                push("-p");
                push(protocol_keyword(*p));
            }
            Self::Comment(text) => {
                push("-m");
                push("comment");
                push("--comment");
                if quoted {
                    push(&quote(text));
                } else {
                    push(text);
                }
            }
            Self::Set { set, flags, negate } => {
                push("-m");
                push("set");
                if *negate {
                    push("!");
                }
                push("--match-set");
                push(&set.name());
                push(flags.as_str());
            }
            Self::Mark {
                value,
                mask,
                negate,
            } => {
                push("-m");
                push("mark");
                if *negate {
                    push("!");
                }
                push("--mark");
                push(&format!("{}/{}", format_mark(*value), format_mark(*mask)));
            }
            Self::AddrTypeLocal { dir, negate } => {
                push("-m");
                push("addrtype");
                if *negate {
                    push("!");
                }
                push(match dir {
                    AddrDir::Src => "--src-type",
                    AddrDir::Dst => "--dst-type",
                });
                push("LOCAL");
            }
            Self::PhysdevIsIn { negate } => {
                push("-m");
                push("physdev");
                if *negate {
                    push("!");
                }
                push("--physdev-is-in");
            }
            Self::CtState(states) => {
                push("-m");
                push("conntrack");
                push("--ctstate");
                let s: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
                push(&s.join(","));
            }
            Self::Ipvs {
                vaddr,
                vproto,
                vport,
            } => {
                push("-m");
                push("ipvs");
                push("--vaddr");
                push(&vaddr.to_string());
                push("--vproto");
                push(protocol_keyword(*vproto));
                push("--vport");
                push(&vport.to_string());
            }
        }
    }
}

impl Target {
    fn push_args(&self, out: &mut Vec<String>) {
        let mut push = |s: &str| out.push(s.to_owned());
        push("-j");
        match self {
            Self::Jump(chain) => push(chain.name()),
            Self::Accept => push("ACCEPT"),
            Self::Drop => push("DROP"),
            Self::Return => push("RETURN"),
            Self::Reject => push("REJECT"),
            Self::Masquerade { random_fully } => {
                push("MASQUERADE");
                if *random_fully {
                    push("--random-fully");
                }
            }
            Self::MarkOr(v) => {
                push("MARK");
                push("--or-mark");
                push(&format_mark(*v));
            }
            Self::MarkXor(v) => {
                push("MARK");
                push("--xor-mark");
                push(&format_mark(*v));
            }
        }
    }
}

impl Rule {
    /// A rule with no matches.
    pub fn new(chain: Chain, target: Target) -> Self {
        Self {
            chain,
            matches: Vec::new(),
            target,
        }
    }

    /// Adds a match (builder style).
    pub fn with(mut self, m: Match) -> Self {
        self.matches.push(m);
        self
    }

    /// The rule specification (matches and target) as restore-file words;
    /// comments are already quoted.
    pub fn spec(&self) -> Vec<String> {
        self.words(true)
    }

    /// The rule specification as plain words (comments unquoted), as
    /// [`split_words`] reads an `iptables-save` line.
    pub fn spec_words(&self) -> Vec<String> {
        self.words(false)
    }

    fn words(&self, quoted: bool) -> Vec<String> {
        let mut out = Vec::new();
        for m in &self.matches {
            m.push_args(&mut out, quoted);
        }
        self.target.push_args(&mut out);
        out
    }
}

/// `-A CHAIN SPEC…`.
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "-A {} {}", self.chain.name(), self.spec().join(" "))
    }
}

/// The iptables program family: `iptables` or `ip6tables`.
pub fn program(family: AddressFamily, tool: Tool) -> &'static str {
    match (family, tool) {
        (AddressFamily::Ipv4, Tool::Restore) => "iptables-restore",
        (AddressFamily::Ipv4, Tool::Save) => "iptables-save",
        (AddressFamily::Ipv4, Tool::Plain) => "iptables",
        (AddressFamily::Ipv6, Tool::Restore) => "ip6tables-restore",
        (AddressFamily::Ipv6, Tool::Save) => "ip6tables-save",
        (AddressFamily::Ipv6, Tool::Plain) => "ip6tables",
    }
}

/// Which of the three iptables programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// `iptables-restore`.
    Restore,
    /// `iptables-save`.
    Save,
    /// `iptables`.
    Plain,
}

/// kube-proxy's lock arguments (`-w 5 -W 100000`: wait up to 5 s for the
/// xtables lock, polling every 100 ms); the nf_tables backend accepts and
/// ignores them.
pub const WAIT_ARGS: [&str; 4] = ["-w", "5", "-W", "100000"];

/// Splits one iptables-save line into words the way iptables-restore does:
/// whitespace separates, double quotes group, a backslash escapes the next
/// character.
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(n) = chars.next() else {
                    return Err("trailing backslash".into());
                };
                cur.push(n);
                in_word = true;
            }
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// One table of `iptables-save` output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SavedTable {
    /// Chains in the order printed.
    pub chains: Vec<String>,
    /// `-A` rules in the order printed: chain and the unquoted words after
    /// it.
    pub rules: Vec<(String, Vec<String>)>,
}

impl SavedTable {
    /// The rules of `chain`, in order, as unquoted words.
    pub fn rules_of<'a>(&'a self, chain: &'a str) -> impl Iterator<Item = &'a [String]> + 'a {
        self.rules
            .iter()
            .filter(move |(c, _)| c == chain)
            .map(|(_, w)| w.as_slice())
    }

    /// Whether the chain exists.
    pub fn has_chain(&self, chain: &str) -> bool {
        self.chains.iter().any(|c| c == chain)
    }
}

/// Parsed `iptables-save` output, by table name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Saved {
    /// Tables by name.
    pub tables: BTreeMap<String, SavedTable>,
}

impl Saved {
    /// The table, if it was printed.
    pub fn table(&self, table: Table) -> Option<&SavedTable> {
        self.tables.get(table.name())
    }
}

/// Why iptables-save output could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("iptables-save line {line_no}: {reason}: {line:?}")]
pub struct SaveParseError {
    /// 1-based line number.
    pub line_no: usize,
    /// The line.
    pub line: String,
    /// What was wrong.
    pub reason: String,
}

/// Parses `iptables-save` output (all tables or one).
pub fn parse_save(text: &str) -> Result<Saved, SaveParseError> {
    let mut saved = Saved::default();
    let mut current: Option<String> = None;
    for (i, line) in text.lines().enumerate() {
        let err = |reason: &str| SaveParseError {
            line_no: i + 1,
            line: line.to_owned(),
            reason: reason.to_owned(),
        };
        let line_t = line.trim();
        if line_t.is_empty() || line_t.starts_with('#') {
            continue;
        }
        if let Some(name) = line_t.strip_prefix('*') {
            saved.tables.entry(name.to_owned()).or_default();
            current = Some(name.to_owned());
            continue;
        }
        if line_t == "COMMIT" {
            current = None;
            continue;
        }
        let Some(table) = current.as_ref().and_then(|t| saved.tables.get_mut(t)) else {
            return Err(err("outside a table"));
        };
        if let Some(decl) = line_t.strip_prefix(':') {
            let name = decl
                .split_whitespace()
                .next()
                .ok_or_else(|| err("empty chain"))?;
            table.chains.push(name.to_owned());
        } else if line_t.starts_with("-A ") {
            let mut words = split_words(line_t).map_err(|r| err(&r))?;
            if words.len() < 2 {
                return Err(err("rule without a chain"));
            }
            let rest = words.split_off(2);
            table.rules.push((words.pop().unwrap_or_default(), rest));
        } else {
            return Err(err("unexpected line"));
        }
    }
    Ok(saved)
}
