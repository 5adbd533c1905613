//! The process's descriptor limit: raised at start from its soft value to
//! its hard one (systemd and most shells start services at a soft 1,024,
//! which would stop accepting at about a thousand connections), and the
//! number the automatic `server.max_connections` is derived from.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// The soft descriptor limit before and after raising it to the hard limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DescriptorLimit {
    pub(crate) before: u64,
    pub(crate) now: u64,
    pub(crate) hard: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit. Failing that (a
/// platform that refuses), the limit is left as it is and reported as such.
pub(crate) fn raise_descriptor_limit() -> DescriptorLimit {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return DescriptorLimit {
            before: 1024,
            now: 1024,
            hard: 1024,
        };
    };
    let raised = soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok();
    DescriptorLimit {
        before: soft,
        now: if raised { hard } else { soft },
        hard,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let limit = raise_descriptor_limit();
        assert_eq!(limit.now, limit.hard, "{limit:?}");
        assert_eq!(
            getrlimit(Resource::RLIMIT_NOFILE).unwrap(),
            (limit.hard, limit.hard)
        );
        // Raising again changes nothing.
        assert_eq!(raise_descriptor_limit().before, limit.hard);
    }
}
