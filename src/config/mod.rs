//! Configuration: deployment settings and secrets from the environment
//! ([`settings`]), and the policy file ([`policy`]) with line-precise errors.

pub mod email;
pub mod ingress;
pub mod paging;
pub mod policy;
pub mod secret;
pub mod settings;

pub use secret::Secret;
pub use settings::{EnvSource, Settings};
