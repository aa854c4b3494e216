//! Our ipsets: read back with one `ipset save`, diffed against the desired
//! [`IpSets`], written with one `ipset restore`.
//!
//! kube-proxy runs one `ipset add`/`ipset del` per changed entry (PR #93445,
//! issue #133773); we send the whole diff in one `ipset restore`. Only sets
//! named by [`SetName::all`] are ever parsed or changed; every other set on
//! the node is skipped line by line.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use ipvs_sys::AddressFamily;

use super::exec::{CommandRunner, ExecError};
use super::sets::{EntryParseError, family_keyword};
use crate::plan::{IpSets, SetEntry, SetKind, SetName};

/// A set of ours as `ipset save` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentSet {
    /// The type it was created with (`hash:ip,port`).
    pub set_type: String,
    /// Its `family` option (`inet`, `inet6`), absent for bitmap sets.
    pub family: Option<String>,
    /// Its members; empty when the type is not the one we use (see
    /// [`CurrentSet::matches`]), since those are not parsed.
    pub entries: BTreeSet<SetEntry>,
}

impl CurrentSet {
    /// Whether the set was created with the type and family we use for
    /// `name`, so that `create … -exist` accepts it and its members parse.
    pub fn matches(&self, name: &SetName) -> bool {
        self.set_type == name.kind.set_type()
            && (name.kind.is_bitmap()
                || self.family.as_deref() == Some(family_keyword(name.family)))
    }
}

/// Our sets present in the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpsetState {
    /// By name; sets of ours that do not exist are absent.
    pub sets: BTreeMap<SetName, CurrentSet>,
}

/// Why `ipset save` output could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ipset save line {line_no}: {reason}: {line:?}")]
pub struct IpsetParseError {
    /// 1-based line number.
    pub line_no: usize,
    /// The line.
    pub line: String,
    /// What was wrong with it.
    pub reason: String,
}

/// An ipset operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum IpsetError {
    /// `ipset save` / `ipset restore` failed.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// `ipset save` printed something we do not understand for one of our
    /// sets.
    #[error(transparent)]
    Parse(#[from] IpsetParseError),
    /// One of our sets exists with another type or family (created by a
    /// different tool or version); it cannot be recreated while iptables
    /// rules reference it.
    #[error("ipset {name} exists as {found}, expected {expected}")]
    Mismatch {
        /// The set.
        name: String,
        /// What we create.
        expected: String,
        /// What the kernel has.
        found: String,
    },
}

/// Parses `ipset save` (or `ipset list -o save`) output, keeping only our
/// sets. Lines of other sets are skipped unparsed; any line of ours that is
/// not a `create` or a plain `add` of a member we could have written is an
/// error.
pub fn parse_save(text: &str) -> Result<IpsetState, IpsetParseError> {
    let mut state = IpsetState::default();
    for (i, line) in text.lines().enumerate() {
        let err = |reason: &str| IpsetParseError {
            line_no: i + 1,
            line: line.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        let mut words = trimmed.split_ascii_whitespace();
        let (Some(cmd), Some(set)) = (words.next(), words.next()) else {
            return Err(err("expected `create NAME …` or `add NAME …`"));
        };
        if cmd != "create" && cmd != "add" {
            return Err(err("expected `create` or `add`"));
        }
        let Some(name) = SetKind::from_name(set) else {
            continue; // not ours
        };
        let rest: Vec<&str> = words.collect();
        if cmd == "create" {
            let Some((set_type, opts)) = rest.split_first() else {
                return Err(err("create without a type"));
            };
            let family = opts
                .windows(2)
                .find(|w| w[0] == "family")
                .map(|w| w[1].to_owned());
            if state.sets.contains_key(&name) {
                return Err(err("set created twice"));
            }
            state.sets.insert(
                name,
                CurrentSet {
                    set_type: (*set_type).to_owned(),
                    family,
                    entries: BTreeSet::new(),
                },
            );
        } else {
            let Some(current) = state.sets.get_mut(&name) else {
                return Err(err("member of a set that was not created before"));
            };
            let [member] = rest.as_slice() else {
                return Err(err("member with options we never set"));
            };
            if !current.matches(&name) {
                continue; // reported as a mismatch by the planner
            }
            let entry = SetEntry::parse(name.kind, member)
                .map_err(|e: EntryParseError| err(&e.to_string()))?;
            if !entry.fits(&name) {
                return Err(err("member of the wrong family"));
            }
            current.entries.insert(entry);
        }
    }
    Ok(state)
}

/// An entry the planner asked for that cannot go into its set (wrong type or
/// family, or a family that is not configured); it is left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RejectedEntry {
    /// The set it was meant for.
    pub set: SetName,
    /// The entry.
    pub entry: SetEntry,
}

/// The desired sets as the kernel will hold them: only `families`, only
/// entries that fit their set, each in [`SetEntry::canonical`] form; plus
/// what was left out.
pub fn canonical_sets(
    desired: &IpSets,
    families: &[AddressFamily],
) -> (IpSets, Vec<RejectedEntry>) {
    let mut out = IpSets::new();
    let mut rejected = Vec::new();
    for (set, entries) in desired {
        for entry in entries {
            if !families.contains(&set.family) || !entry.fits(set) {
                rejected.push(RejectedEntry {
                    set: *set,
                    entry: *entry,
                });
                continue;
            }
            out.entry(*set).or_default().extend(entry.canonical());
        }
    }
    (out, rejected)
}

/// The changes that take the kernel's sets to the desired ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpsetPlan {
    /// Sets to create (missing ones of the configured families).
    pub create: Vec<SetName>,
    /// Members to delete.
    pub del: Vec<(SetName, SetEntry)>,
    /// Members to add.
    pub add: Vec<(SetName, SetEntry)>,
    /// Sets to destroy (only on cleanup).
    pub destroy: Vec<SetName>,
}

impl IpsetPlan {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty()
            && self.del.is_empty()
            && self.add.is_empty()
            && self.destroy.is_empty()
    }

    /// The `ipset restore` input: creates, then deletions, then additions,
    /// then destroys, each line idempotent (`-exist`).
    pub fn render(&self) -> String {
        let mut s = String::new();
        for set in &self.create {
            let _ = writeln!(s, "create {} {} -exist", set.name(), set.create_options());
        }
        for (set, entry) in &self.del {
            let _ = writeln!(s, "del {} {entry} -exist", set.name());
        }
        for (set, entry) in &self.add {
            let _ = writeln!(s, "add {} {entry} -exist", set.name());
        }
        for set in &self.destroy {
            let _ = writeln!(s, "destroy {}", set.name());
        }
        s
    }
}

/// Plans the sync of our sets: every set of a configured family exists,
/// holds exactly its `desired` entries (already [`canonical_sets`]), and
/// every other set of ours that exists is emptied but kept (iptables rules
/// may still reference it; [`plan_cleanup`] destroys it).
pub fn plan_sync(
    desired: &IpSets,
    current: &IpsetState,
    families: &[AddressFamily],
) -> Result<IpsetPlan, IpsetError> {
    let mut plan = IpsetPlan::default();
    let empty = BTreeSet::new();
    for name in SetName::all() {
        let configured = families.contains(&name.family);
        let want = desired.get(&name).filter(|_| configured).unwrap_or(&empty);
        match current.sets.get(&name) {
            Some(cur) if !cur.matches(&name) => {
                return Err(IpsetError::Mismatch {
                    name: name.name(),
                    expected: name.create_options(),
                    found: match &cur.family {
                        Some(f) => format!("{} family {f}", cur.set_type),
                        None => cur.set_type.clone(),
                    },
                });
            }
            Some(cur) => plan.change_members(name, want, &cur.entries),
            None if configured => {
                plan.create.push(name);
                plan.add.extend(want.iter().map(|e| (name, *e)));
            }
            None => {}
        }
    }
    Ok(plan)
}

impl IpsetPlan {
    /// Adds the member changes that take set `name` from `have` to `want`.
    pub fn change_members(
        &mut self,
        name: SetName,
        want: &BTreeSet<SetEntry>,
        have: &BTreeSet<SetEntry>,
    ) {
        self.del.extend(have.difference(want).map(|e| (name, *e)));
        self.add.extend(want.difference(have).map(|e| (name, *e)));
    }
}

/// Plans `--cleanup`: destroy every set of ours that exists, whatever its
/// type. Run it only after the iptables rules that reference them are gone.
pub fn plan_cleanup(current: &IpsetState) -> IpsetPlan {
    IpsetPlan {
        destroy: current.sets.keys().copied().collect(),
        ..IpsetPlan::default()
    }
}

/// Reads our sets with one `ipset save`.
pub fn read_sets(runner: &dyn CommandRunner) -> Result<IpsetState, IpsetError> {
    let out = runner.run("ipset", &["save"], None)?;
    Ok(parse_save(&out.stdout)?)
}

/// Applies a plan with one `ipset restore` (nothing is run for an empty
/// plan).
pub fn apply_plan(runner: &dyn CommandRunner, plan: &IpsetPlan) -> Result<(), IpsetError> {
    if plan.is_empty() {
        return Ok(());
    }
    runner.run("ipset", &["restore"], Some(plan.render().as_bytes()))?;
    Ok(())
}
