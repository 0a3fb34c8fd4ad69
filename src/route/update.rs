//! Changing one company of a compiled table without touching the others.
//!
//! A full [`RoutingTable::build_with`] must compare every company of the
//! new configuration with the old one, which for 10,000 companies costs
//! tens of milliseconds of comparisons alone. When the change is known to
//! concern one company (an admin API call, a per-tenant file), these
//! functions validate and compile only that company, check it against the
//! platform-wide indexes (domain, DDIs, carrier), and copy the indexes
//! (flat integer tables, see `route::index`): a few milliseconds at most.

use std::sync::Arc;

use crate::config::validate::{company_place, validate_company};
use crate::config::{self, ConfigErrors, ErrorKind};

use super::index::ddi_key;
use super::table::{BuildOptions, CompiledCompany, RoutingTable};

impl RoutingTable {
    /// A new table where `company` replaces the company of the same name
    /// (or is added); every other company keeps its `Arc`. The company is
    /// validated, including against the rest of the platform (unique
    /// domain, DDIs owned once, known carrier).
    pub fn with_company(
        &self,
        company: &config::Company,
        options: BuildOptions,
    ) -> Result<RoutingTable, ConfigErrors> {
        let place = company_place(company);
        let mut errors = ConfigErrors::new();
        validate_company(company, &place, &mut errors);
        let carrier = company
            .carrier
            .as_deref()
            .and_then(|n| self.carrier_configs.iter().find(|c| c.name == n));
        match (&company.carrier, carrier) {
            (Some(name), None) => errors.push(
                place.field("carrier"),
                ErrorKind::Dangling {
                    what: "carrier",
                    name: name.clone(),
                },
            ),
            (None, _) => errors.push(
                place.field("carrier"),
                ErrorKind::Conflict("missing: every company needs a carrier".into()),
            ),
            _ => {}
        }
        if let Some(owner) = self.company(&company.domain) {
            if *owner.name != *company.name {
                errors.push(
                    place.field("domain"),
                    ErrorKind::Duplicate {
                        what: "company domain",
                        value: company.domain.clone(),
                    },
                );
            }
        }
        for ddi in &company.ddi {
            if let Some(owner) = self.ddi_owner(&ddi.number) {
                if *owner.name != *company.name {
                    errors.push(
                        place.field("ddi").named(&ddi.number),
                        ErrorKind::Conflict(format!(
                            "DDI {} is owned twice (also by company {})",
                            ddi.number, owner.name
                        )),
                    );
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let compiled = Arc::new(CompiledCompany::compile(
            company,
            carrier,
            options.size_limit,
        )?);

        let mut next = self.clone();
        let index = match next
            .by_name
            .get(&company.name, |i| &self.companies[i as usize].name)
        {
            Some(i) => {
                next.unindex(i);
                next.companies[i as usize] = compiled;
                i
            }
            None => {
                next.companies.push(compiled);
                let i = (next.companies.len() - 1) as u32;
                next.by_name.insert(&company.name, i);
                i
            }
        };
        next.index(index);
        Ok(next)
    }

    /// A new table without the company called `name`; `None` if there is
    /// no such company.
    pub fn without_company(&self, name: &str) -> Option<RoutingTable> {
        let i = self
            .by_name
            .get(name, |i| &self.companies[i as usize].name)?;
        let mut next = self.clone();
        next.unindex(i);
        next.by_name.remove(name, i);
        let last = (next.companies.len() - 1) as u32;
        next.companies.swap_remove(i as usize);
        if i != last {
            // The last company moved into slot `i`.
            next.unindex_at(i, last);
            next.by_name
                .renumber(&next.companies[i as usize].name.clone(), last, i);
            next.index(i);
        }
        Some(next)
    }

    /// Removes the domain and DDIs of company `i` from the indexes.
    fn unindex(&mut self, i: u32) {
        self.unindex_at(i, i);
    }

    /// Removes the domain and DDIs of the company now in slot `slot`,
    /// indexed under `was`.
    fn unindex_at(&mut self, slot: u32, was: u32) {
        let company = Arc::clone(&self.companies[slot as usize]);
        self.carrier_numberings.remove(&self.carriers, &company);
        self.by_domain.remove(&company.domain, was);
        for number in company.ddis.keys() {
            if let Some(key) = ddi_key(number) {
                if self.ddis.get(&key) == Some(&was) {
                    self.ddis.remove(&key);
                }
            }
        }
    }

    /// Adds the domain and DDIs of company `i` to the indexes.
    fn index(&mut self, i: u32) {
        let company = Arc::clone(&self.companies[i as usize]);
        self.carrier_numberings.add(&self.carriers, &company);
        self.by_domain.insert(&company.domain, i);
        for number in company.ddis.keys() {
            if let Some(key) = ddi_key(number) {
                self.ddis.insert(key, i);
            }
        }
    }
}
