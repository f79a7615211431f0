//! Groups as the core sees them: who is in one (cached), whether it is
//! read from its timeline or from each member's inbox, and the admin
//! operations that change them.

use std::sync::Arc;

use corecast_cluster::conversation::Conversation;
use corecast_storage::GroupInfo;

use super::{ChatError, RouterCore};

/// A group's members and how its messages are read, as cached by the core.
#[derive(Clone)]
pub(super) struct GroupView {
    pub(super) members: Arc<[String]>,
    /// Stored once in the timeline and read from there (a group that is, or
    /// once was, larger than `small_group_limit`), rather than copied into
    /// each member's inbox.
    pub(super) reads_timeline: bool,
}

impl RouterCore {
    /// A group's view, from the cache or the store. A group larger than the
    /// limit whose store flag is not set yet (the limit was lowered since)
    /// gets the flag now, so that it never reads inboxes again.
    pub(super) async fn group_view(&self, group: &str) -> Result<GroupView, ChatError> {
        let generation = {
            let state = self.state();
            if let Some(view) = state.groups.get(group) {
                return Ok(view.clone());
            }
            state.groups_generation
        };
        let info = self.store_call(self.store.group(group)).await?;
        let info = info.ok_or_else(|| ChatError::NotFound(format!("group {group}")))?;
        let large = info.members.len() > self.config.small_group_limit;
        if large && !info.read_fanout {
            self.store_call(self.store.add_members(group, &[], self.config.small_group_limit)).await?;
        }
        let view = GroupView { members: info.members.into(), reads_timeline: info.read_fanout || large };
        let mut state = self.state();
        // A change since the read began makes this view stale: use it for
        // this request, cache it not.
        if state.groups_generation == generation {
            state.groups.insert(group.to_string(), view.clone());
        }
        Ok(view)
    }

    /// Who takes part in `conv` and whether it is read from its timeline,
    /// checking that `user` takes part.
    pub(super) async fn participants(&self, conv: &Conversation, user: &str) -> Result<GroupView, ChatError> {
        let view = match conv {
            // A note to self has one participant, not the same one twice.
            Conversation::Direct { low, high } if low == high => {
                GroupView { members: Arc::from(vec![low.clone()]), reads_timeline: true }
            }
            Conversation::Direct { low, high } => {
                GroupView { members: Arc::from(vec![low.clone(), high.clone()]), reads_timeline: true }
            }
            Conversation::Group { group } => self.group_view(group).await?,
        };
        if !view.members.iter().any(|m| m == user) {
            return Err(ChatError::Forbidden("not a member of this conversation".into()));
        }
        Ok(view)
    }

    /// Creates a group (read-fan-out from the start if it is already larger
    /// than `small_group_limit`).
    pub async fn create_group(&self, group: &str, members: &[String]) -> Result<(), ChatError> {
        self.check_id("group", group)?;
        for member in members {
            self.check_id("member", member)?;
        }
        let result = self.store_call(self.store.create_group(group, members, self.config.small_group_limit)).await;
        self.forget_group(group);
        result
    }

    /// Adds and removes members of a group. A group that grows past
    /// `small_group_limit` is read from its timeline for good, flagged in
    /// the store by the same write that adds the members.
    pub async fn change_members(&self, group: &str, add: &[String], remove: &[String]) -> Result<(), ChatError> {
        for member in add {
            self.check_id("member", member)?;
        }
        let limit = self.config.small_group_limit;
        let result = async {
            if !add.is_empty() {
                self.store_call(self.store.add_members(group, add, limit)).await?;
            }
            if !remove.is_empty() {
                self.store_call(self.store.remove_members(group, remove)).await?;
            }
            Ok(())
        }
        .await;
        self.forget_group(group);
        result
    }

    /// A group and its members.
    pub async fn group(&self, group: &str) -> Result<Option<GroupInfo>, ChatError> {
        self.store_call(self.store.group(group)).await
    }

    /// Every group id.
    pub async fn list_groups(&self) -> Result<Vec<String>, ChatError> {
        self.store_call(self.store.list_groups()).await
    }
}
