//! Compiles `[[listeners]]`: their names and addresses, each used once. The
//! `[listeners.tls]` tables are left to `tls`.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::{span, Compiler};
use crate::config::parse::parse_listen_addr;
use crate::config::raw::RawConfig;
use crate::config::snapshot::{ListenerSpec, ServerSettings};

impl Compiler<'_, '_> {
    pub(super) fn listeners(
        &mut self,
        raw: &RawConfig,
        server: &ServerSettings,
    ) -> Vec<ListenerSpec> {
        if raw.listeners.is_empty() {
            self.d.global(
                "no [[listeners]]: expected at least one, e.g. address = \"127.0.0.1:8080\"",
            );
        }
        let mut out: Vec<ListenerSpec> = Vec::new();
        let mut seen: HashMap<SocketAddr, usize> = HashMap::new();
        for (i, l) in raw.listeners.iter().enumerate() {
            let l = l.get_ref();
            let name = l
                .name
                .as_ref()
                .map_or_else(|| format!("listener-{}", i + 1), |n| n.get_ref().clone());
            if let Some(n) = &l.name {
                if out.iter().any(|o| o.name == *n.get_ref()) {
                    self.d.at(
                        span(n),
                        format!("duplicate listener name {:?}", n.get_ref()),
                    );
                }
            }
            match parse_listen_addr(l.address.get_ref()) {
                Ok(addr) => {
                    if let Some(prev) = seen.insert(addr, i) {
                        self.d.at(
                            span(&l.address),
                            format!(
                                "listener address {addr} is already used by listener {}",
                                prev + 1
                            ),
                        );
                    }
                    let tls = l
                        .tls
                        .as_ref()
                        .and_then(|t| self.listener_tls(&name, t, server));
                    out.push(ListenerSpec { name, addr, tls });
                }
                Err(msg) => self.d.at(span(&l.address), msg),
            }
        }
        out
    }
}
