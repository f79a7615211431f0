//! The Lua scripts of the Redis store. Redis runs each alone, so each is
//! atomic: an append with its idempotency record, fence check and fan-out, a
//! fence or a cursor that only moves forward, a group change. Seqs are 16-digit hex strings, so
//! Lua's string comparison is numeric order (Lua numbers are doubles and
//! would round a 64-bit seq).

use std::sync::LazyLock;

use redis::Script;

/// ARGV: prefix, conv, seq, idempotency key, message, mode ("timeline" or
/// "inboxes"), then (member, member's inbox key) pairs. Returns nil when
/// stored, the original message when the idempotency key exists, or 0
/// (storing nothing) when the conversation is fenced above the seq.
const APPEND: &str = r#"
local p, conv, seq, cid = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local original = redis.call('GET', cid)
if original then
  local c, s = string.match(original, '^(.*)\n(%x+)$')
  return redis.call('HGET', p .. 'msg:' .. c, s)
end
local fence = redis.call('GET', p .. 'fence:' .. conv)
if fence and seq < fence then
  return 0
end
redis.call('HSET', p .. 'msg:' .. conv, seq, ARGV[5])
redis.call('ZADD', p .. 'tl:' .. conv, 0, seq)
redis.call('SET', cid, conv .. '\n' .. seq)
local last = redis.call('GET', p .. 'last:' .. conv)
if (not last) or last < seq then
  redis.call('SET', p .. 'last:' .. conv, seq)
end
local inboxes = ARGV[6] == 'inboxes'
for i = 7, #ARGV, 2 do
  local member, inbox = ARGV[i], ARGV[i + 1]
  if inboxes then
    redis.call('ZADD', inbox, 0, seq)
  end
  local index = p .. 'uconv:' .. member
  local known = redis.call('HGET', index, conv)
  if (not known) or known < seq then
    redis.call('HSET', index, conv, seq)
  end
end
return false
"#;

/// KEYS: the cursor hash. ARGV: conv, seq. Never moves a cursor back.
const SET_CURSOR: &str = r#"
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if (not stored) or stored < ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
return 1
"#;

/// KEYS: the fence key. ARGV: seq. Raises the fence, never lowers it.
const FENCE: &str = r#"
local stored = redis.call('GET', KEYS[1])
if (not stored) or stored < ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1])
end
return 1
"#;

/// ARGV: prefix, group, "create" | "add" | "remove", large_above,
/// members... Returns 1 on success, 0 when the group exists (create) or
/// does not (add, remove). The group's marker becomes "large" for good
/// once it has more than large_above members.
const CHANGE_GROUP: &str = r#"
local p, group, how, large_above = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local marker = p .. 'group:' .. group
local exists = redis.call('EXISTS', marker) == 1
if how == 'create' then
  if exists then return 0 end
  redis.call('SET', marker, '')
  redis.call('SADD', p .. 'groups', group)
elseif not exists then
  return 0
end
for i = 5, #ARGV do
  local member = ARGV[i]
  if how == 'remove' then
    redis.call('SREM', p .. 'members:' .. group, member)
    redis.call('SREM', p .. 'ugroups:' .. member, group)
  else
    redis.call('SADD', p .. 'members:' .. group, member)
    redis.call('SADD', p .. 'ugroups:' .. member, group)
  end
end
if how ~= 'remove' and redis.call('SCARD', p .. 'members:' .. group) > large_above then
  redis.call('SET', marker, 'large')
end
return 1
"#;

/// The append script (its SHA-1 computed once).
pub static APPEND_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(APPEND));

/// The cursor script.
pub static SET_CURSOR_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(SET_CURSOR));

/// The fence script.
pub static FENCE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(FENCE));

/// The group script.
pub static CHANGE_GROUP_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(CHANGE_GROUP));
