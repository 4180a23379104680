//! The online-user JSON and the arithmetic of the activity window. Pure
//! code, unit-tested on the host.

use common::presence::ACTIVE_WINDOW;
use serde::{Deserialize, Serialize};

/// What is stored under `chat:user:<id>`.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub emoji: String,
}

/// An online user as clients see it.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct OnlineUser {
    pub name: String,
    pub emoji: String,
    pub last_seen_at: String,
    /// Whether this entry is the caller.
    pub is_me: bool,
}

/// The oldest last-seen time (Unix ms) that still counts as online.
pub fn cutoff(now_millis: u64) -> u64 {
    now_millis.saturating_sub(ACTIVE_WINDOW.as_millis() as u64)
}

/// Joins the sorted-set entries (id, last seen ms; most recent first) with
/// their profiles (JSON, `None` once expired) into the list to return.
pub fn online_users(
    caller_id: u64,
    entries: &[(u64, f64)],
    profiles: Vec<Option<String>>,
    format_time: impl Fn(u64) -> String,
) -> Vec<OnlineUser> {
    entries
        .iter()
        .zip(profiles)
        .filter_map(|(&(id, score), profile)| {
            // A profile that expired or is unreadable leaves the user out
            // rather than failing the whole list.
            let profile: Profile = serde_json::from_str(profile.as_deref()?).ok()?;
            Some(OnlineUser {
                name: profile.name,
                emoji: profile.emoji,
                last_seen_at: format_time(score.max(0.0) as u64),
                is_me: id == caller_id,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoff_is_two_minutes_back() {
        assert_eq!(cutoff(1_000_000), 880_000);
        assert_eq!(cutoff(5), 0);
    }

    #[test]
    fn joins_entries_with_profiles() {
        let p = |n: &str| Some(serde_json::to_string(&Profile { name: n.into(), emoji: "🦊".into() }).unwrap());
        let users = online_users(
            2,
            &[(2, 3000.0), (1, 2000.0), (3, 1000.0)],
            vec![p("Me"), None, Some("garbage".into())],
            |ms| format!("t{ms}"),
        );
        assert_eq!(
            users,
            vec![OnlineUser { name: "Me".into(), emoji: "🦊".into(), last_seen_at: "t3000".into(), is_me: true }]
        );
    }
}
