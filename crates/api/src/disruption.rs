//! PodDisruptionBudget rules shared by the eviction subresource and the
//! disruption controller: which pods a budget covers, how an int-or-percent
//! resolves, and the `DisruptionAllowed` condition (Kubernetes'
//! component-helpers `poddisruptionbudget` package).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::policy::v1::PodDisruptionBudgetStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub const DISRUPTION_ALLOWED: &str = "DisruptionAllowed";
pub const SUFFICIENT_PODS: &str = "SufficientPods";
pub const INSUFFICIENT_PODS: &str = "InsufficientPods";
pub const SYNC_FAILED: &str = "SyncFailed";

/// Whether a budget's selector covers a pod with `labels`: policy/v1 says a
/// null selector matches no pods and an empty one every pod of the
/// namespace; an invalid one matches nothing.
pub fn selects(selector: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    let Some(sel) = selector else {
        return false;
    };
    crate::selectors::LabelSelector::from_api(sel).is_ok_and(|s| s.matches(labels))
}

/// An int-or-percent against `total` (Kubernetes'
/// `GetScaledValueFromIntOrPercent`); a malformed percent counts as 0.
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> i32 {
    match v {
        IntOrString::Int(i) => *i,
        IntOrString::String(s) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            let scaled = pct * i64::from(total);
            let v = if round_up {
                (scaled + 99).div_euclid(100)
            } else {
                scaled.div_euclid(100)
            };
            v as i32
        }
    }
}

/// Sets `DisruptionAllowed` from `disruptionsAllowed` (True with
/// SufficientPods when above 0, else False with InsufficientPods); the
/// transition time moves only when the status flips, as
/// `meta.SetStatusCondition` does.
pub fn set_disruption_allowed(status: &mut PodDisruptionBudgetStatus, now: DateTime<Utc>) {
    let (value, reason) = if status.disruptions_allowed > 0 {
        ("True", SUFFICIENT_PODS)
    } else {
        ("False", INSUFFICIENT_PODS)
    };
    set_condition(status, value, reason, String::new(), now);
}

/// Sets (or adds) the `DisruptionAllowed` condition.
pub fn set_condition(
    status: &mut PodDisruptionBudgetStatus,
    value: &str,
    reason: &str,
    message: String,
    now: DateTime<Utc>,
) {
    let observed = status.observed_generation;
    let conds = status.conditions.get_or_insert_with(Vec::new);
    match conds.iter_mut().find(|c| c.type_ == DISRUPTION_ALLOWED) {
        Some(c) => {
            if c.status != value {
                c.last_transition_time = Time(now);
            }
            c.status = value.into();
            c.reason = reason.into();
            c.message = message;
            c.observed_generation = observed;
        }
        None => conds.push(Condition {
            type_: DISRUPTION_ALLOWED.into(),
            status: value.into(),
            reason: reason.into(),
            message,
            observed_generation: observed,
            last_transition_time: Time(now),
        }),
    }
}

/// Whether `DisruptionAllowed` agrees with the status numbers and was set
/// for the observed generation (`ConditionsAreUpToDate`).
pub fn condition_up_to_date(status: &PodDisruptionBudgetStatus) -> bool {
    let Some(c) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == DISRUPTION_ALLOWED)
    else {
        return false;
    };
    let want = if status.disruptions_allowed > 0 {
        ("True", SUFFICIENT_PODS)
    } else {
        ("False", INSUFFICIENT_PODS)
    };
    c.observed_generation == status.observed_generation
        && (c.status.as_str(), c.reason.as_str()) == want
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn null_selector_covers_nothing_and_empty_covers_everything() {
        let app = labels(&[("app", "web")]);
        assert!(!selects(None, &app));
        assert!(selects(Some(&LabelSelector::default()), &app));
        let web = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            ..Default::default()
        };
        assert!(selects(Some(&web), &app));
        assert!(!selects(Some(&web), &labels(&[("app", "db")])));
    }

    #[test]
    fn percentages_scale_rounding_up_or_down() {
        let pct = IntOrString::String("50%".into());
        assert_eq!(scaled_value(&pct, 3, true), 2);
        assert_eq!(scaled_value(&pct, 3, false), 1);
        assert_eq!(scaled_value(&IntOrString::Int(4), 3, true), 4);
    }

    #[test]
    fn condition_follows_disruptions_allowed_and_keeps_its_transition_time() {
        let t0 = Utc::now() - chrono::Duration::minutes(5);
        let mut s = PodDisruptionBudgetStatus {
            disruptions_allowed: 1,
            observed_generation: Some(2),
            ..Default::default()
        };
        assert!(!condition_up_to_date(&s));
        set_disruption_allowed(&mut s, t0);
        assert!(condition_up_to_date(&s));
        let c = &s.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", "SufficientPods")
        );
        set_disruption_allowed(&mut s, Utc::now());
        assert_eq!(s.conditions.as_ref().unwrap()[0].last_transition_time.0, t0);
        s.disruptions_allowed = 0;
        assert!(!condition_up_to_date(&s));
        set_disruption_allowed(&mut s, Utc::now());
        let c = &s.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "InsufficientPods")
        );
        assert!(c.last_transition_time.0 > t0);
    }
}
