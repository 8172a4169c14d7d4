//! Runtime pieces shared by swbd, swrtp and swctl.

pub mod grpc;
pub mod logging;
pub mod metrics_http;
pub mod paths;
pub mod secret;
pub mod shutdown;
pub mod time;
pub mod yaml;
