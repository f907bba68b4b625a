"""The policy of `dar mcp-proxy --policy examples/mcp_policy.py -- ...`: which effect each
upstream tool has and which rules judge its calls. The proxy reloads it when it changes."""

from dar import Deny, Effect, rule

# Tools this policy does not name are mutate-external at best (irreversible unless the
# server says destructiveHint: false), and irreversible ones are refused until a rule
# applies to them.
effects = {
    "get_*": "read",
    "list_*": "read",
    "search_*": "read",
    "create_issue": "mutate-external",
    "add_comment": "mutate-external",
    "merge_pull_request": "irreversible",
    "delete_*": "irreversible",
}


@rule(applies_to=Effect.IRREVERSIBLE)
def not_on_main(args: dict, ctx) -> Deny | bool:
    """Nothing irreversible touches the main branch."""
    if args.get("branch", "main") == "main" or args.get("base") == "main":
        return Deny("irreversible actions on main need a human")
    return True


@rule(applies_to="create_issue")
async def few_issues_per_session(args: dict, ctx) -> Deny | bool:
    """At most 5 issues per agent session: the proxy's runtime is async, so the log is
    read with await."""
    opened = await ctx.events(
        correlation_id=ctx.correlation_id, tool="create_issue", status="executed"
    )
    if len(opened) >= 5:
        return Deny("5 issues already opened in this session")
    return True


rules = [not_on_main, few_issues_per_session]

# One issue per title and repository, whatever else the agent adds; for a day.
keys = {"create_issue": lambda args: f"{args['owner']}/{args['repo']}:{args['title']}"}
windows = {"create_issue": 24 * 3600}

# Trust the annotations of these servers (by their serverInfo name): readOnlyHint makes
# a tool `read` only when its server is trusted.
trust_annotations = ["github"]
