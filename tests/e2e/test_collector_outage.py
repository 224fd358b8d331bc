"""A collector outage neither blocks tool calls nor loses audit records: the filter keeps them,
retries, and once the collector is back every record arrives exactly once."""

from __future__ import annotations

from collections import Counter

from support import (
    clean_scan,
    acp_counters, assert_record, assert_unique_ids, call_tool, caller, expected_record, wait_for_counter_deltas,
    wait_for_records,
)

CALLS = 20


def test_records_made_while_the_collector_is_down_arrive_exactly_once_after_it_returns(make_stack) -> None:
    stack = make_stack().start()
    alice = caller(stack, ["salesforce:read"], azp="claude-desktop-app")
    before = acp_counters(stack)

    stack.stop_collector()
    replies = [call_tool(stack, alice.token, "salesforce.query", {"query": f"outage call {i}"}, id=i)
               for i in range(CALLS)]
    assert [r.status for r in replies] == [200] * CALLS, [r.text for r in replies if r.status != 200]
    # The filter has tried and failed to deliver while the collector was down.
    wait_for_counter_deltas(stack, before, {"audit_records_queued": CALLS, "audit_records_retried": 1})
    stack.start_collector()

    records = wait_for_records(stack, CALLS, user=alice.sub, timeout=30)
    assert len(records) == CALLS, records
    assert_unique_ids(records)
    per_query = Counter(r["input"]["query"] for r in records)
    assert per_query == Counter(f"outage call {i}" for i in range(CALLS))
    by_query = {r["input"]["query"]: r for r in records}
    for i, reply in enumerate(replies):
        args = {"query": f"outage call {i}"}
        # The timestamp is the call's, not the delivery's.
        assert_record(by_query[args["query"]], expected_record(
            event="tool.call", result="success", reason=None, tool="salesforce.query", input=args,
            scope_required=["salesforce:read"], scope_result="pass",
            identity=alice.identity(client_type="claude-desktop"), content_scan=clean_scan()), reply, forwarded=True)

    after = wait_for_counter_deltas(stack, before, {"audit_records_sent": CALLS})
    assert after["audit_records_retried"] - before.get("audit_records_retried", 0) > 0
    assert after["audit_records_sent"] - before.get("audit_records_sent", 0) == CALLS
    assert after["audit_records_dropped"] == before.get("audit_records_dropped", 0)
