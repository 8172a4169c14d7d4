//! Admin views of a dialplan: `GetDialplan` and `TestRoute` responses.

use switchboard_proto::admin::v1 as pb;

use super::plan::{Action, CallInfo, Dialplan};

impl Dialplan {
    /// The `GetDialplan` response.
    pub fn to_proto(&self) -> pb::Dialplan {
        pb::Dialplan {
            version: self.version().hash.clone(),
            loaded_at: Some(switchboard_proto::timestamp(self.version().loaded_at)),
            source: self.source().to_string(),
            yaml: self.yaml().to_string(),
            routes: self
                .routes()
                .iter()
                .map(|r| pb::RouteSummary {
                    id: r.id.clone(),
                    name: r.name.clone().unwrap_or_default(),
                    priority: r.priority,
                    enabled: r.enabled,
                    r#match: r.matcher.to_string(),
                    actions: u32::try_from(r.actions.len()).unwrap_or(u32::MAX),
                })
                .collect(),
        }
    }

    /// The `TestRoute` response: which route a call would take and its
    /// actions with variables substituted. Nothing is executed; `set`
    /// actions are applied in order so later actions see their values.
    /// An unparsable `source_ip` counts as unknown (routes with a `source`
    /// condition then do not match).
    pub fn test_route(
        &self,
        destination: &str,
        caller: &str,
        source_ip: &str,
        domain: &str,
        from_domain: &str,
    ) -> pb::TestRouteResponse {
        let call = CallInfo {
            destination: destination.to_string(),
            caller: caller.to_string(),
            domain: domain.to_string(),
            from_domain: from_domain.to_string(),
            source_ip: source_ip.trim().parse().ok(),
        };
        let mut resp = pb::TestRouteResponse {
            dialplan_version: self.version().hash.clone(),
            no_match_status: u32::from(self.no_match().code),
            ..Default::default()
        };
        let Some(routed) = self.route(&call) else {
            resp.variables = call.variables().into_iter().collect();
            return resp;
        };
        let mut vars = routed.variables;
        for action in &routed.route.actions {
            resp.actions.push(pb::ResolvedAction {
                name: action.name().to_string(),
                description: action.describe(&vars),
            });
            if let Action::Set(pairs) = action {
                for (k, v) in pairs {
                    let value = v.render(&vars);
                    vars.insert(k.clone(), value);
                }
            }
        }
        resp.matched = true;
        resp.route_id = routed.route.id.clone();
        resp.route_name = routed.route.name.clone().unwrap_or_default();
        resp.variables = vars.into_iter().collect();
        resp
    }
}
