//! The netfilter reconciler: one `ipset save` + one `ipset restore`, then per
//! family one `iptables-save` + one `iptables-restore --noflush`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use ipvs_sys::AddressFamily;

use super::exec::{CommandRunner, ExecError, SystemRunner};
use super::ipset::{self, IpsetError, RejectedEntry};
use super::iptables::{self, SaveParseError, Saved, Tool, WAIT_ARGS, program, split_words};
use super::rules::{self, ConfigError, LocalDetector, NetfilterConfig};
use crate::plan::DesiredState;

/// A netfilter operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum NetfilterError {
    /// Reading or writing our ipsets failed.
    #[error("ipset: {0}")]
    Ipset(#[from] IpsetError),
    /// `iptables-save` failed.
    #[error("{family:?} iptables-save: {source}")]
    Save {
        /// The family.
        family: AddressFamily,
        /// The failure.
        source: ExecError,
    },
    /// `iptables-save` printed something unreadable.
    #[error("{family:?}: {source}")]
    SaveParse {
        /// The family.
        family: AddressFamily,
        /// The failure.
        source: SaveParseError,
    },
    /// `iptables-restore` failed (counted in
    /// [`Netfilter::iptables_restore_failures`]).
    #[error("{family:?} iptables-restore: {source}")]
    Restore {
        /// The family.
        family: AddressFamily,
        /// The failure.
        source: ExecError,
    },
    /// A cleanup step failed.
    #[error("cleanup: {0}")]
    Cleanup(ExecError),
}

/// What a sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Desired entries that could not be stored (wrong type or family, or an
    /// unconfigured family) and were left out.
    pub rejected: Vec<RejectedEntry>,
    /// Sets created.
    pub sets_created: usize,
    /// Set members added.
    pub entries_added: usize,
    /// Set members deleted.
    pub entries_deleted: usize,
    /// Jump rules inserted into built-in chains (all families).
    pub jumps_inserted: usize,
    /// Duplicate jump rules deleted (all families).
    pub jumps_deleted: usize,
    /// Rules of our chains found missing or extra before the restore
    /// ([`rules::RuleSet::drift`], all families; full syncs only).
    pub rules_restored: usize,
}

/// What `--cleanup` could not do (empty when it did everything).
#[derive(Debug, Default)]
pub struct CleanupReport {
    /// The failures, in order; cleanup goes on after each.
    pub errors: Vec<NetfilterError>,
}

/// What the last successful sync left in the kernel, so an incremental
/// sync can skip the reads.
#[derive(Debug, Default)]
struct Applied {
    sets: crate::plan::IpSets,
    rules: [Option<rules::RuleSet>; 2],
}

/// Programs our ipsets and iptables rules.
#[derive(Debug)]
pub struct Netfilter<R: CommandRunner = SystemRunner> {
    runner: R,
    config: NetfilterConfig,
    restore_failures: [AtomicU64; 2],
    applied: Mutex<Option<Applied>>,
}

fn family_index(family: AddressFamily) -> usize {
    match family {
        AddressFamily::Ipv4 => 0,
        AddressFamily::Ipv6 => 1,
    }
}

impl<R: CommandRunner> Netfilter<R> {
    /// A reconciler for `config`, running the tools through `runner`.
    pub fn new(runner: R, config: NetfilterConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            runner,
            config,
            restore_failures: Default::default(),
            applied: Mutex::new(None),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &NetfilterConfig {
        &self.config
    }

    /// Replaces the local-traffic detector (NodeCIDR mode learns the pod
    /// CIDRs from the Node object after start). Returns whether it changed;
    /// the next [`sync`](Self::sync) renders the rules with it.
    pub fn set_local_detector(&mut self, detector: LocalDetector) -> Result<bool, ConfigError> {
        if self.config.local_detector == detector {
            return Ok(false);
        }
        let config = NetfilterConfig {
            local_detector: detector,
            ..self.config.clone()
        };
        config.validate()?;
        self.config = config;
        Ok(true)
    }

    /// The runner.
    pub fn runner(&self) -> &R {
        &self.runner
    }

    /// How many `iptables-restore` runs failed, both families
    /// (`sync_proxy_rules_iptables_restore_failures_total`).
    pub fn iptables_restore_failures(&self) -> u64 {
        self.restore_failures
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// How many `iptables-restore` runs failed for one family (the metric's
    /// `ip_family` label).
    pub fn iptables_restore_failures_for(&self, family: AddressFamily) -> u64 {
        self.restore_failures[family_index(family)].load(Ordering::Relaxed)
    }

    /// Reads one family's tables with one `iptables-save`.
    pub fn read_iptables(&self, family: AddressFamily) -> Result<Saved, NetfilterError> {
        let out = self
            .runner
            .run(program(family, Tool::Save), &[], None)
            .map_err(|source| NetfilterError::Save { family, source })?;
        iptables::parse_save(&out.stdout)
            .map_err(|source| NetfilterError::SaveParse { family, source })
    }

    /// Brings our sets, chains and jumps to `desired`: the sets first (the
    /// rules reference them), then each configured family's rules. A family
    /// whose restore fails does not stop the other; the first error is
    /// returned. Reads the kernel first (`ipset save`, `iptables-save`), so
    /// it repairs any drift.
    pub fn sync(&self, desired: &DesiredState) -> Result<SyncReport, NetfilterError> {
        let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        // Until this sync succeeds, nothing is known about the kernel.
        *applied = None;
        let families = &self.config.families;
        let (sets, rejected) = ipset::canonical_sets(&desired.sets, families);
        for r in &rejected {
            tracing::warn!(set = %r.set.name(), entry = %r.entry, "ipset entry left out: does not fit its set");
        }
        let current = ipset::read_sets(&self.runner)?;
        let plan = ipset::plan_sync(&sets, &current, families)?;
        ipset::apply_plan(&self.runner, &plan)?;
        let mut report = SyncReport {
            rejected,
            sets_created: plan.create.len(),
            entries_added: plan.add.len(),
            entries_deleted: plan.del.len(),
            ..SyncReport::default()
        };

        let mut first_err = None;
        let mut rules_applied: [Option<rules::RuleSet>; 2] = Default::default();
        for &family in families {
            match self.sync_rules(family, &sets, desired) {
                Ok((ins, del, drift, rules)) => {
                    report.jumps_inserted += ins;
                    report.jumps_deleted += del;
                    report.rules_restored += drift;
                    rules_applied[family_index(family)] = Some(rules);
                }
                Err(e) => {
                    tracing::error!(error = %e, "iptables sync failed");
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => {
                *applied = Some(Applied {
                    sets,
                    rules: rules_applied,
                });
                Ok(report)
            }
        }
    }

    /// An incremental sync: trusts that the kernel still holds what the
    /// last successful sync left (the periodic full [`Self::sync`] repairs
    /// drift), so it reads nothing. Only set members that differ from then
    /// are added or deleted (one `ipset restore`), and a family's rules are
    /// restored only if they would differ. Falls back to [`Self::sync`]
    /// when there is no successful sync to start from.
    pub fn sync_changes(&self, desired: &DesiredState) -> Result<SyncReport, NetfilterError> {
        let mut guard = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        let Some(mut last) = guard.take() else {
            drop(guard);
            return self.sync(desired);
        };
        let families = &self.config.families;
        let (sets, rejected) = ipset::canonical_sets(&desired.sets, families);
        let mut plan = ipset::IpsetPlan::default();
        let empty = std::collections::BTreeSet::new();
        for name in crate::plan::SetName::all() {
            if !families.contains(&name.family) {
                continue;
            }
            let want = sets.get(&name).unwrap_or(&empty);
            let have = last.sets.get(&name).unwrap_or(&empty);
            plan.change_members(name, want, have);
        }
        ipset::apply_plan(&self.runner, &plan)?;
        let report = SyncReport {
            rejected,
            entries_added: plan.add.len(),
            entries_deleted: plan.del.len(),
            ..SyncReport::default()
        };
        last.sets = sets;
        let mut first_err = None;
        for &family in families {
            let i = family_index(family);
            let rules =
                rules::build_rules(&self.config, family, &last.sets, &desired.lb_out_filters);
            if last.rules[i].as_ref() == Some(&rules) {
                continue;
            }
            // Jumps were fixed by the last full sync; only our chains change.
            let input = rules.render_restore(&rules::JumpPlan::default());
            match self.restore(family, &input) {
                Ok(()) => last.rules[i] = Some(rules),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            // The kernel is in an unknown state: the next sync reads it.
            Some(e) => Err(e),
            None => {
                *guard = Some(last);
                Ok(report)
            }
        }
    }

    fn restore(&self, family: AddressFamily, input: &str) -> Result<(), NetfilterError> {
        let mut args: Vec<&str> = WAIT_ARGS.to_vec();
        args.extend(["--noflush", "--counters"]);
        if let Err(source) = self.runner.run(
            program(family, Tool::Restore),
            &args,
            Some(input.as_bytes()),
        ) {
            self.restore_failures[family_index(family)].fetch_add(1, Ordering::Relaxed);
            return Err(NetfilterError::Restore { family, source });
        }
        Ok(())
    }

    fn sync_rules(
        &self,
        family: AddressFamily,
        sets: &crate::plan::IpSets,
        desired: &DesiredState,
    ) -> Result<(usize, usize, usize, rules::RuleSet), NetfilterError> {
        let saved = self.read_iptables(family)?;
        let jumps = rules::plan_jumps(&saved);
        let rules = rules::build_rules(&self.config, family, sets, &desired.lb_out_filters);
        let drift = rules.drift(&saved);
        self.restore(family, &rules.render_restore(&jumps))?;
        Ok((jumps.insert.len(), jumps.delete.len(), drift, rules))
    }

    /// `--cleanup`: for both families remove our jumps from the built-in
    /// chains and flush and delete our chains, then destroy our sets.
    /// Nothing else is touched. Each step is one restore; if it fails (a
    /// foreign rule still references a chain or set of ours), what is left is
    /// read again and removed one command at a time, so that everything
    /// removable is removed and each failure is reported.
    pub fn cleanup(&self) -> CleanupReport {
        *self.applied.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let mut report = CleanupReport::default();
        for family in [AddressFamily::Ipv4, AddressFamily::Ipv6] {
            let input = match self.read_iptables(family) {
                Ok(saved) => rules::render_cleanup(&saved),
                Err(e) => {
                    report.errors.push(e);
                    continue;
                }
            };
            let Some(input) = input else {
                continue;
            };
            let mut args: Vec<&str> = WAIT_ARGS.to_vec();
            args.push("--noflush");
            let restore = self.runner.run(
                program(family, Tool::Restore),
                &args,
                Some(input.as_bytes()),
            );
            if restore.is_ok() {
                continue;
            }
            // Tables commit one by one: re-read what is left.
            match self.read_iptables(family) {
                Ok(saved) => {
                    if let Some(rest) = rules::render_cleanup(&saved) {
                        self.cleanup_line_by_line(family, &rest, &mut report);
                    }
                }
                Err(e) => report.errors.push(e),
            }
        }
        let plan = match ipset::read_sets(&self.runner) {
            Ok(current) => ipset::plan_cleanup(&current),
            Err(e) => {
                report.errors.push(e.into());
                return report;
            }
        };
        if ipset::apply_plan(&self.runner, &plan).is_err() {
            // `ipset restore` stops at the first failing line: destroy what
            // is left one by one.
            match ipset::read_sets(&self.runner) {
                Ok(current) => {
                    for set in current.sets.keys() {
                        let name = set.name();
                        if let Err(e) = self.runner.run("ipset", &["destroy", &name], None) {
                            report.errors.push(NetfilterError::Cleanup(e));
                        }
                    }
                }
                Err(e) => report.errors.push(e.into()),
            }
        }
        report
    }

    fn cleanup_line_by_line(&self, family: AddressFamily, input: &str, report: &mut CleanupReport) {
        let mut table = "";
        for line in input.lines() {
            if let Some(t) = line.strip_prefix('*') {
                table = t;
                continue;
            }
            if line == "COMMIT" {
                continue;
            }
            let Ok(words) = split_words(line) else {
                continue;
            };
            let mut args: Vec<&str> = WAIT_ARGS.to_vec();
            args.extend(["-t", table]);
            args.extend(words.iter().map(String::as_str));
            if let Err(e) = self.runner.run(program(family, Tool::Plain), &args, None) {
                report.errors.push(NetfilterError::Cleanup(e));
            }
        }
    }
}

/// Whether `iptables` supports `MASQUERADE --random-fully`: kube-proxy's
/// test, version 1.6.2 or later, from `iptables --version`.
pub fn probe_random_fully(runner: &dyn CommandRunner, family: AddressFamily) -> bool {
    runner
        .run(program(family, Tool::Plain), &["--version"], None)
        .ok()
        .and_then(|out| parse_iptables_version(&out.stdout))
        .is_some_and(|v| v >= (1, 6, 2))
}

/// Parses `iptables v1.8.9 (nf_tables)` into `(1, 8, 9)`.
pub fn parse_iptables_version(text: &str) -> Option<(u32, u32, u32)> {
    let v = text.split_whitespace().find_map(|w| w.strip_prefix('v'))?;
    let mut parts = v.split('.').map(|p| {
        p.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse::<u32>()
            .ok()
    });
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    let patch = parts.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}
