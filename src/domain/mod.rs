//! Pure logic: identifiers, durations, the command grammar, the request
//! lifecycle, policy decisions, audit chaining. No tokio, no sled, no HTTP;
//! every function that needs the time takes `now`.

pub mod audit;
pub mod backoff;
pub mod command;
pub mod contact;
pub mod duration;
pub mod email;
pub mod hours;
pub mod identity;
pub mod ids;
pub mod job;
pub mod mapping;
pub mod message;
pub mod on_call;
pub mod policy;
pub mod quota;
pub mod request;
pub mod routing;
pub mod sweep;
pub mod template;
pub mod text;
pub mod usage;
