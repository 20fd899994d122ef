"""The sink's Lua script: one call appends a chunk of outputs to the public output
streams and applies them to the views (flows.redis_sink sends it).

Each view's layout and its part of the write plan live in its own module
(billing.session_view, billing.order_view, billing.sharer_view, billing.share_view);
this script composes them, so that one call writes every key once."""

from __future__ import annotations

from billing import order_view, script_keys, session_view, sharer_view
from billing.keys import WEBHOOK_GROUP

# One script call per chunk of a batch appends every output to its public stream and updates
# the views, written so that a replayed output (at-least-once recovery) changes
# nothing: a session view only moves to a later (started_ts, version)
# (billing.session_view), an order view is keyed by output_id (billing.order_view;
# both expire ttl_ms after their last write), and a sharer's balances and statement
# take each output once (an applied mark per output, a field of its minute's bucket
# of marks by `ts`, with no TTL: whole buckets are swept by the log's time,
# flows.fact_sweeper, so that an output given again after a crash finds its mark
# however long the flows stood still; billing.sharer_view owns that view's layout and
# write plan). Every key the call
# writes is declared in KEYS, and ARGV names it by its index (billing.script_keys):
# on a Redis Cluster they all carry the deployment's hash tag (billing.keys).
#
# The script checks everything that can fail before it writes anything: a Lua
# error does not undo the writes before it, so a late failure would leave an
# output marked applied but never counted. The one write that can fail is a
# balance passing int64 (HINCRBY refuses); that output is named in the answer
# and the sink writes it as a reject instead. The check bounds each balance first
# (its value now plus the size of every delta in the call); only a bound past the
# limit makes it ask which outputs are applied already and run the exact totals.
#
# Redis's work per output is what a live run spends most of Redis's time on, and
# with two processes Redis shares the cores with the flows. So besides one XADD
# per output (a stream takes one entry per call), the script writes each key once
# per call: each balance or funnel field once with the sum of its increments
# (summed exactly: see `increment`), each order view in one HSET, each statement
# day in one ZADD, each session view once with its latest usage. The final state
# is that of applying each output alone, in order (tests/live/test_sink_writes.py
# checks it against that oracle). Numbers are parsed once per call and XADD's
# arguments made once, since Lua's number to text and back is much of its time.
# Measured with bench.bench_sink (2026-12-03): 5.2 to 2.1 commands per output, and
# Redis's CPU per output from 28 to 30 us down to 21 to 23 us.
#
# The output streams are public, but not kept for ever: each XADD trims entries older
# than ttl_ms (R and the facts margin), approximately (whole radix-tree nodes, O(1)
# amortised). A reader resuming from an older id starts at the oldest entry kept.
# The one reader that must see every entry is the webhook dispatchers' consumer group
# (billing.keys.WEBHOOK_GROUP): the trim stops at the oldest entry that group has not
# finished (not yet read, or read and not acknowledged), so dispatchers stopped for
# longer than ttl_ms lose no delivery; the stream then holds what they have yet to do.
#
# Entry ids come from one sequence shared by the output streams (Redis's clock,
# then a counter within the millisecond), so an id names one output across all
# of them and their merge is totally ordered: `/v1/stream` resumes from a single id.
#
# Arguments (a key: its KEYS index): stats_outputs, stats_rejects, seqkey, ttl_ms,
# marks_index, then per output:
#   kind, stream, output_id, data, and
#   usage: view, started_ts, version | reject: reason |
#   commission, payout: order_view ('' for a payout), marks bucket, legacy mark,
#   statement, statement_ttl_ms, ts, n, n x (hash, field, delta), m, m x hash to
#   expire after ttl_ms (the balances of billing.sharer_view, the funnel of
#   billing.share_view).
WRITE = (
    script_keys.LUA
    + session_view.LUA
    + order_view.LUA
    + f"local MARK_BUCKET_MS = {sharer_view.MARK_BUCKET_MS}\n"
    + f"local WEBHOOK_GROUP = '{WEBHOOK_GROUP}'\n"
    + """
local outputs, rejects, seqkey, ttl = K(ARGV[1]), K(ARGV[2]), K(ARGV[3]), ARGV[4]
local marks_index = K(ARGV[5])
local LIMIT = 9.2e18  -- below 2^63 by far more than a double's error at this size
local EXACT = 9007199254740992  -- 2^53: Lua's numbers are doubles, exact below it
-- A whole number as decimal text (Lua prints doubles past 1e14 in exponent form).
local function as_integer(v)
  if v == 0 then return '0' end  -- never '-0', which HINCRBY refuses
  return string.format('%.0f', v)
end
-- Each delta's value, parsed once.
local delta_at = {}
local function delta(j)
  local v = delta_at[j]
  if v == nil then v = tonumber(ARGV[j]) delta_at[j] = v end
  return v
end

-- 1. The check. A balance's value now, read once per (hash, field).
local now = {}
local function balance(key, field)
  local fields = slot_of(now, key)
  local v = fields[field]
  if v == nil then
    v = tonumber(redis.call('HGET', key, field) or '0') or 0
    fields[field] = v
  end
  return v
end
-- Where each output's arguments start, which outputs carry balances, and where
-- each of those has its deltas end and its views end.
local starts, money, deltas_end, views_end = {}, {}, {}, {}
local i = 6
while i <= #ARGV do
  starts[#starts + 1] = i
  local kind = ARGV[i]
  if kind == 'usage' then
    i = i + 7
  elseif kind == 'reject' then
    i = i + 5
  else
    money[#money + 1] = i
    local d = i + 11 + 3 * tonumber(ARGV[i + 10])
    deltas_end[i], views_end[i] = d, d + 1 + tonumber(ARGV[d])
    i = views_end[i]
  end
end
-- Whether an output was counted before: its mark in its minute's bucket, or the mark
-- a version before the buckets set (a key of its own, with a TTL), for the outputs
-- the first re-run after an upgrade gives again.
local function applied_already(i)
  return redis.call('HEXISTS', K(ARGV[i + 5]), ARGV[i + 2]) == 1
      or redis.call('EXISTS', K(ARGV[i + 6])) == 1
end
-- Marks an output counted (false if it was counted before): the check and the set
-- in one HSETNX, where applied_already and an HSET would take two commands.
local function mark(i)
  return redis.call('EXISTS', K(ARGV[i + 6])) == 0
      and redis.call('HSETNX', K(ARGV[i + 5]), ARGV[i + 2], '1') == 1
end
-- First a bound: the value now plus the size of every delta in the call. Below the
-- limit (always, but for totals near 2^63), no subset of the outputs can pass it,
-- in any order, so which outputs are applied already need not be asked.
local bound, close = {}, false
for _, i in ipairs(money) do
  for j = i + 11, deltas_end[i] - 1, 3 do
    local key, field = K(ARGV[j]), ARGV[j + 1]
    local fields = slot_of(bound, key)
    local b = (fields[field] or math.abs(balance(key, field))) + math.abs(delta(j + 2))
    fields[field] = b
    if b > LIMIT then close = true end
  end
end
if close then
  -- Near the limit: the exact running totals of the outputs not yet applied, in order.
  local pending = {}
  for _, i in ipairs(money) do
    if not applied_already(i) then
      for j = i + 11, deltas_end[i] - 1, 3 do
        local key, field = K(ARGV[j]), ARGV[j + 1]
        local fields = slot_of(pending, key)
        local p = (fields[field] or balance(key, field)) + delta(j + 2)
        fields[field] = p
        if math.abs(p) > LIMIT then
          return {'overflow', ARGV[i + 2]}
        end
      end
    end
  end
end

-- 2. The writes. Increments are summed per (hash, field) and written once at the
-- end, exactly: a sum is kept while it and its deltas stay below 2^53, and past
-- that what was summed is written, then the delta as given (its decimal text).
local sums = {}
local function increment(key, field, j)
  local fields = slot_of(sums, key)
  local sum, d = fields[field] or 0, delta(j)
  if math.abs(d) < EXACT and math.abs(sum + d) < EXACT then
    fields[field] = sum + d
  else
    if sum ~= 0 then redis.call('HINCRBY', key, field, as_integer(sum)) end
    redis.call('HINCRBY', key, field, ARGV[j])
    fields[field] = 0
  end
end
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local last = redis.call('HMGET', seqkey, 'ms', 'seq')
local last_ms, seq = tonumber(last[1] or '0'), tonumber(last[2] or '-1')
if ms > last_ms then seq = -1 else ms = last_ms end
-- Each XADD's arguments made once per call, but for the sequence number.
local minid = as_integer(math.max(0, ms - tonumber(ttl)))
-- Whether stream id a is before b ('<ms>' or '<ms>-<seq>'; both parts below 2^53).
local function before(a, b)
  local am, as = string.match(a, '^(%d+)%-?(%d*)$')
  local bm, bs = string.match(b, '^(%d+)%-?(%d*)$')
  am, bm = tonumber(am), tonumber(bm)
  if am ~= bm then return am < bm end
  return (tonumber(as) or 0) < (tonumber(bs) or 0)
end
-- Where a stream's trim stops: ttl behind now, or sooner at the webhook group's
-- oldest unfinished entry (its oldest pending one, or the last it read: entries
-- after it are unread). Asked once per stream per call.
local trim_at = {}
local function trim_from(stream)
  local found = trim_at[stream]
  if found ~= nil then return found end
  found = minid
  local groups = redis.pcall('XINFO', 'GROUPS', stream)  -- an error: no stream yet
  if type(groups) == 'table' and groups.err == nil then
    for _, g in ipairs(groups) do
      local info = {}
      for j = 1, #g, 2 do info[g[j]] = g[j + 1] end
      if info['name'] == WEBHOOK_GROUP then
        if before(info['last-delivered-id'], found) then found = info['last-delivered-id'] end
        if tonumber(info['pending']) > 0 then
          local oldest = redis.call('XPENDING', stream, WEBHOOK_GROUP)[2]
          if before(oldest, found) then found = oldest end
        end
      end
    end
  end
  trim_at[stream] = found
  return found
end
local id_prefix = as_integer(ms) .. '-'
local counts, reasons, touched, statements, entries, marked = {}, {}, {}, {}, {}, {}
for _, i in ipairs(starts) do
  local kind, stream, output_id, data = ARGV[i], K(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3]
  seq = seq + 1
  -- Output streams keep ttl_ms (R and a margin) of entries, trimmed as they grow.
  redis.call('XADD', stream, 'MINID', '~', trim_from(stream), id_prefix .. seq,
             'output_id', output_id, 'data', data)
  counts[kind] = (counts[kind] or 0) + 1
  if kind == 'usage' then
    local view = K(ARGV[i + 4])
    apply_usage(view, ARGV[i + 5], ARGV[i + 6], data)
    touched[view] = ttl  -- R and a margin after the session's last output
  elseif kind == 'reject' then
    reasons[ARGV[i + 4]] = (reasons[ARGV[i + 4]] or 0) + 1
  else
    local order_view = K(ARGV[i + 4])
    apply_order(order_view, output_id, data)
    if order_view ~= '' then touched[order_view] = ttl end
    if mark(i) then
      local bucket, ts = K(ARGV[i + 5]), ARGV[i + 9]
      -- Indexed by where the bucket's minute ends: swept once that is behind the cutoff.
      marked[bucket] = (math.floor(tonumber(ts) / MARK_BUCKET_MS) + 1) * MARK_BUCKET_MS
      for j = i + 11, deltas_end[i] - 1, 3 do
        increment(K(ARGV[j]), ARGV[j + 1], j + 2)
      end
      for j = deltas_end[i] + 1, views_end[i] - 1 do
        touched[K(ARGV[j])] = ttl
      end
      local statement = K(ARGV[i + 7])
      local day = slot_of(entries, statement)
      day[#day + 1] = ts
      day[#day + 1] = data
      if statements[statement] == nil then statements[statement] = ARGV[i + 8] end
    end
  end
end
-- Once per key (or field) per call, not once per output; the expiries last, when
-- every key they name has been written.
write_usage()
write_orders()
for key, fields in pairs(sums) do
  for field, sum in pairs(fields) do redis.call('HINCRBY', key, field, as_integer(sum)) end
end
for key, day in pairs(entries) do call_in_chunks('ZADD', key, day) end
for bucket, ends in pairs(marked) do redis.call('ZADD', marks_index, as_integer(ends), bucket) end
for key, n in pairs(counts) do redis.call('HINCRBY', outputs, key, n) end
for key, n in pairs(reasons) do redis.call('HINCRBY', rejects, key, n) end
for key, ms_ttl in pairs(touched) do redis.call('PEXPIRE', key, ms_ttl) end
-- A day's statement keeps only entries within its retention (a retention shorter
-- than a day would otherwise keep the whole day while it is being written).
for key, ms_ttl in pairs(statements) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. as_integer(math.max(0, ms - tonumber(ms_ttl))))
  redis.call('PEXPIRE', key, ms_ttl)
end
redis.call('HSET', seqkey, 'ms', ms, 'seq', seq)
return {'ok'}
"""
)
