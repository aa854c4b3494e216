//! flannel's `--ip-masq` and forward rules, built from typed values and
//! applied with one `iptables-restore --noflush` per family through the
//! proxy's netfilter runner. Only `FLANNEL-POSTRTG` (nat), `FLANNEL-FWD`
//! (filter) and the jumps into them are touched. The first rule returns
//! packets carrying the proxy's masquerade mark (0x4000 by default) so a
//! service packet is never masqueraded twice.

use super::error::MasqError;
use std::fmt::Write as _;

use ipnet::IpNet;
use ipvs_sys::AddressFamily;

use crate::netfilter::iptables::{
    self, Chain, Match, Rule, Saved, Table, Target, Tool, WAIT_ARGS, program,
};
use crate::netfilter::{CommandRunner, probe_random_fully};

/// The comment on every masquerade rule (flannel's).
pub const MASQ_COMMENT: &str = "flanneld masq";
/// The comment on every forward rule (flannel's).
pub const FWD_COMMENT: &str = "flanneld forward";

/// One family's inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MasqSpec {
    /// The cluster network (`Network` or `IPv6Network`).
    pub network: IpNet,
    /// This node's pod subnet.
    pub subnet: IpNet,
    /// The proxy's masquerade mark (`1 << masqueradeBit`).
    pub mark: u32,
    /// `MASQUERADE --random-fully` (when iptables supports it).
    pub random_fully: bool,
    /// Whether to masquerade at all (`--overlay-ip-masq`); the forward
    /// rules are written either way, as flannel's are.
    pub ip_masq: bool,
}

/// `-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG`.
pub fn postrtg_jump() -> Rule {
    Rule::new(Chain::Postrouting, Target::Jump(Chain::FlannelPostrtg))
        .with(Match::Comment(MASQ_COMMENT))
}

/// `-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD`.
pub fn fwd_jump() -> Rule {
    Rule::new(Chain::Forward, Target::Jump(Chain::FlannelFwd)).with(Match::Comment(FWD_COMMENT))
}

fn multicast(network: IpNet) -> IpNet {
    match network {
        IpNet::V4(_) => "224.0.0.0/4".parse().unwrap_or(network),
        IpNet::V6(_) => "ff00::/8".parse().unwrap_or(network),
    }
}

/// flannel's `masqRules` (without the jump), in its order.
pub fn postrtg_rules(s: &MasqSpec) -> Vec<Rule> {
    let c = Chain::FlannelPostrtg;
    let src = |net, negate| Match::Source { net, negate };
    let dst = |net, negate| Match::Destination { net, negate };
    let comment = Match::Comment(MASQ_COMMENT);
    let masq = Target::Masquerade {
        random_fully: s.random_fully,
    };
    vec![
        Rule::new(c, Target::Return)
            .with(Match::Mark {
                value: s.mark,
                mask: s.mark,
                negate: false,
            })
            .with(comment.clone()),
        Rule::new(c, Target::Return)
            .with(src(s.subnet, false))
            .with(dst(s.network, false))
            .with(comment.clone()),
        Rule::new(c, Target::Return)
            .with(src(s.network, false))
            .with(dst(s.subnet, false))
            .with(comment.clone()),
        Rule::new(c, Target::Return)
            .with(src(s.network, true))
            .with(dst(s.subnet, false))
            .with(comment.clone()),
        Rule::new(c, masq)
            .with(src(s.network, false))
            .with(dst(multicast(s.network), true))
            .with(comment.clone()),
        Rule::new(c, masq)
            .with(src(s.network, true))
            .with(dst(s.network, false))
            .with(comment),
    ]
}

/// flannel's `forwardRules` (without the jump).
pub fn fwd_rules(network: IpNet) -> Vec<Rule> {
    let comment = Match::Comment(FWD_COMMENT);
    vec![
        Rule::new(Chain::FlannelFwd, Target::Accept)
            .with(Match::Source {
                net: network,
                negate: false,
            })
            .with(comment.clone()),
        Rule::new(Chain::FlannelFwd, Target::Accept)
            .with(Match::Destination {
                net: network,
                negate: false,
            })
            .with(comment),
    ]
}

/// iptables-save prints marks without leading zeros (`0x4000/0x4000`);
/// compare words with hex values normalised.
fn normalise(words: &[String]) -> Vec<String> {
    words
        .iter()
        .map(|w| {
            let parts: Option<Vec<String>> = w
                .split('/')
                .map(|p| {
                    p.strip_prefix("0x")
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .map(|v| format!("{v:#x}"))
                })
                .collect();
            parts.map(|p| p.join("/")).unwrap_or_else(|| w.clone())
        })
        .collect()
}

fn count(saved: &Saved, table: Table, rule: &Rule) -> usize {
    let want = normalise(&rule.spec_words());
    saved
        .table(table)
        .map(|t| {
            t.rules_of(rule.chain.name())
                .filter(|r| normalise(r) == want)
                .count()
        })
        .unwrap_or(0)
}

fn chain_matches(saved: &Saved, table: Table, chain: Chain, rules: &[Rule]) -> bool {
    let Some(t) = saved.table(table) else {
        return false;
    };
    if !t.has_chain(chain.name()) {
        return false;
    }
    let have: Vec<Vec<String>> = t.rules_of(chain.name()).map(normalise).collect();
    let want: Vec<Vec<String>> = rules.iter().map(|r| normalise(&r.spec_words())).collect();
    have == want
}

fn render_table(
    out: &mut String,
    saved: &Saved,
    table: Table,
    chain: Chain,
    jump: &Rule,
    rules: &[Rule],
) {
    let jumps = count(saved, table, jump);
    if jumps == 1 && chain_matches(saved, table, chain, rules) {
        return;
    }
    let _ = writeln!(out, "*{}", table.name());
    // Declaring the chain creates it or flushes just it.
    let _ = writeln!(out, ":{} - [0:0]", chain.name());
    for _ in 1..jumps {
        let _ = writeln!(out, "-D {} {}", jump.chain.name(), jump.spec().join(" "));
    }
    if jumps == 0 {
        // flannel appends its jumps.
        let _ = writeln!(out, "{jump}");
    }
    for r in rules {
        let _ = writeln!(out, "{r}");
    }
    out.push_str("COMMIT\n");
}

/// The `iptables-restore --noflush` input that brings one family's chains
/// to `spec`, given what `iptables-save` printed; empty when everything is
/// already right.
pub fn render_restore(saved: &Saved, spec: &MasqSpec) -> String {
    let mut out = String::new();
    if spec.ip_masq {
        render_table(
            &mut out,
            saved,
            Table::Nat,
            Chain::FlannelPostrtg,
            &postrtg_jump(),
            &postrtg_rules(spec),
        );
    }
    render_table(
        &mut out,
        saved,
        Table::Filter,
        Chain::FlannelFwd,
        &fwd_jump(),
        &fwd_rules(spec.network),
    );
    out
}

/// The `--cleanup` input: every copy of our jumps deleted, our chains
/// flushed and deleted. `None` when nothing of ours is present.
pub fn render_cleanup(saved: &Saved) -> Option<String> {
    let mut out = String::new();
    for (table, chain, jump) in [
        (Table::Nat, Chain::FlannelPostrtg, postrtg_jump()),
        (Table::Filter, Chain::FlannelFwd, fwd_jump()),
    ] {
        let jumps = count(saved, table, &jump);
        let present = saved
            .table(table)
            .is_some_and(|t| t.has_chain(chain.name()));
        if jumps == 0 && !present {
            continue;
        }
        let _ = writeln!(out, "*{}", table.name());
        for _ in 0..jumps {
            let _ = writeln!(out, "-D {} {}", jump.chain.name(), jump.spec().join(" "));
        }
        if present {
            let _ = writeln!(out, "-F {}\n-X {}", chain.name(), chain.name());
        }
        out.push_str("COMMIT\n");
    }
    (!out.is_empty()).then_some(out)
}

/// Applies the rules of one family with the proxy's runner.
pub struct Masq<R: CommandRunner> {
    runner: R,
    random_fully: [bool; 2],
}

fn family_of(net: IpNet) -> AddressFamily {
    match net {
        IpNet::V4(_) => AddressFamily::Ipv4,
        IpNet::V6(_) => AddressFamily::Ipv6,
    }
}

impl<R: CommandRunner> Masq<R> {
    /// Probes `--random-fully` support per family (kube-proxy's test).
    pub fn new(runner: R) -> Self {
        let random_fully = [
            probe_random_fully(&runner, AddressFamily::Ipv4),
            probe_random_fully(&runner, AddressFamily::Ipv6),
        ];
        Self {
            runner,
            random_fully,
        }
    }

    /// Whether `MASQUERADE --random-fully` is used for the family.
    pub fn random_fully(&self, family: AddressFamily) -> bool {
        self.random_fully[usize::from(family == AddressFamily::Ipv6)]
    }

    fn read(&self, family: AddressFamily) -> Result<Saved, MasqError> {
        let out = self.runner.run(program(family, Tool::Save), &[], None)?;
        Ok(iptables::parse_save(&out.stdout)?)
    }

    /// Brings one family's chains to `spec` (`random_fully` in `spec` is
    /// replaced by the probe's answer). Returns whether a restore ran.
    pub fn sync(&self, spec: &MasqSpec) -> Result<bool, MasqError> {
        let family = family_of(spec.network);
        let spec = MasqSpec {
            random_fully: self.random_fully(family),
            ..*spec
        };
        let saved = self.read(family)?;
        let input = render_restore(&saved, &spec);
        if input.is_empty() {
            return Ok(false);
        }
        let mut args: Vec<&str> = WAIT_ARGS.to_vec();
        args.push("--noflush");
        self.runner.run(
            program(family, Tool::Restore),
            &args,
            Some(input.as_bytes()),
        )?;
        Ok(true)
    }

    /// Removes our jumps and chains in both families; returns the errors.
    pub fn cleanup(&self) -> Vec<MasqError> {
        let mut errors = Vec::new();
        for family in [AddressFamily::Ipv4, AddressFamily::Ipv6] {
            let input = match self.read(family) {
                Ok(saved) => render_cleanup(&saved),
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            if let Some(input) = input {
                let mut args: Vec<&str> = WAIT_ARGS.to_vec();
                args.push("--noflush");
                if let Err(e) = self.runner.run(
                    program(family, Tool::Restore),
                    &args,
                    Some(input.as_bytes()),
                ) {
                    errors.push(e.into());
                }
            }
        }
        errors
    }
}
