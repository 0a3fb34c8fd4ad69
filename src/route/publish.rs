//! Publishing the live routing table and replacing it on reload.
//!
//! The live [`RoutingTable`] sits in an [`ArcSwap`]. Each worker thread
//! owns a [`Reader`], which wraps an `arc_swap::Cache`: while the table has
//! not changed, [`Reader::table`] is one atomic load and a pointer compare,
//! with no lock and no reference-count increment per call.
//!
//! [`Publisher::reload`] validates and compiles the new configuration on
//! the calling thread (off the hot path), reusing every company whose
//! configuration and carrier are unchanged (their `Arc<CompiledCompany>`
//! is shared, not rebuilt, so editing one company of 10,000 costs one
//! company's compilation), then swaps. A configuration with any problem
//! never replaces the running table; the problems are returned.
//!
//! ```
//! use tandem::route::Publisher;
//! let text = std::fs::read_to_string("config/tandem.toml").unwrap();
//! let publisher = Publisher::new(&tandem::config::parse(&text).unwrap()).unwrap();
//! let mut reader = publisher.reader();
//! assert!(reader.table().company("acme.example.com").is_some());
//! assert!(publisher.reload_text("[[company]]\nnmae = 1").is_err());
//! assert!(reader.table().company("acme.example.com").is_some());
//! ```

use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, Cache};

use crate::config::{self, Config, ConfigErrors};

use super::table::{BuildOptions, RoutingTable};

/// Owner of the live routing table.
#[derive(Debug)]
pub struct Publisher {
    live: Arc<ArcSwap<RoutingTable>>,
    /// Serialises reloads, so two concurrent reloads cannot both diff
    /// against the same old table and lose one update.
    reload: Mutex<()>,
    options: BuildOptions,
}

/// What a successful reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReloadStats {
    /// Companies validated and compiled anew.
    pub compiled: usize,
    /// Companies reused unchanged from the previous table.
    pub reused: usize,
}

impl Publisher {
    /// Validates and compiles `config` and publishes it.
    pub fn new(config: &Config) -> Result<Publisher, ConfigErrors> {
        Self::with_options(config, BuildOptions::default())
    }

    /// Like [`Publisher::new`], with explicit build options.
    pub fn with_options(config: &Config, options: BuildOptions) -> Result<Publisher, ConfigErrors> {
        let table = RoutingTable::build_with(config, None, options)?;
        Ok(Publisher {
            live: Arc::new(ArcSwap::from_pointee(table)),
            reload: Mutex::new(()),
            options,
        })
    }

    /// The current table (one reference-count increment; use a [`Reader`]
    /// on hot paths).
    pub fn table(&self) -> Arc<RoutingTable> {
        self.live.load_full()
    }

    /// A per-thread reader of the live table.
    pub fn reader(&self) -> Reader {
        Reader {
            cache: Cache::new(Arc::clone(&self.live)),
        }
    }

    /// Replaces the live table with one compiled from `config`, reusing
    /// unchanged companies. On any problem the live table stays as it is
    /// and every problem is returned.
    pub fn reload(&self, config: &Config) -> Result<ReloadStats, ConfigErrors> {
        let _guard = self.reload.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.live.load_full();
        let table = RoutingTable::build_with(config, Some(&old), self.options)?;
        let reused = table
            .companies()
            .iter()
            .filter(|c| {
                old.company_by_name(&c.name)
                    .is_some_and(|o| Arc::ptr_eq(o, c))
            })
            .count();
        let stats = ReloadStats {
            compiled: table.companies().len() - reused,
            reused,
        };
        self.live.store(Arc::new(table));
        Ok(stats)
    }

    /// Replaces (or adds) the one company called `company.name`, leaving
    /// every other company and the rest of the configuration as they are;
    /// see `RoutingTable::with_company`. On a problem nothing changes.
    pub fn update_company(&self, company: &config::Company) -> Result<(), ConfigErrors> {
        let _guard = self.reload.lock().unwrap_or_else(|e| e.into_inner());
        let next = self.live.load().with_company(company, self.options)?;
        self.live.store(Arc::new(next));
        Ok(())
    }

    /// Removes the company called `name`; false if there is none.
    pub fn remove_company(&self, name: &str) -> bool {
        let _guard = self.reload.lock().unwrap_or_else(|e| e.into_inner());
        let Some(next) = self.live.load().without_company(name) else {
            return false;
        };
        self.live.store(Arc::new(next));
        true
    }

    /// [`Publisher::reload`] from TOML text.
    pub fn reload_text(&self, text: &str) -> Result<ReloadStats, ConfigErrors> {
        self.reload(&config::parse_unvalidated(text)?)
    }
}

/// A per-thread handle on the live table; see the module doc.
#[derive(Debug)]
pub struct Reader {
    cache: Cache<Arc<ArcSwap<RoutingTable>>, Arc<RoutingTable>>,
}

impl Reader {
    /// The live table, as of the last swap.
    #[inline]
    pub fn table(&mut self) -> &Arc<RoutingTable> {
        self.cache.load()
    }
}
