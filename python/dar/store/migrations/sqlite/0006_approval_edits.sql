-- Approve with an edit: a person may change the arguments (the amount) rather than refuse.
-- The grant stays bound to the request; the waiting call runs on the edited arguments,
-- whose canonical JSON and hash are kept here (NULL: approved as asked).
ALTER TABLE agent_tool_approvals ADD COLUMN edited_input TEXT;
ALTER TABLE agent_tool_approvals ADD COLUMN edited_hash TEXT;
