-- Schema version 6 of task-store-postgres: tasks that wait for other tasks.
--
-- A waiting task is a pending row whose `ready_at` is NULL (task-core's `Task::ready_at` is
-- None while `waiting_for` is not empty), with the awaited ids in its document. Claims never
-- see it (they read `ready_at <= now`). Each claim first wakes the waiting tasks whose awaited
-- tasks have all ended, looking only at those that changed, or wait for a task that ended,
-- since its process last looked: this index finds the waiting rows that name a given task.
-- It holds only waiting rows, and is updated in place (no pending list to scan).
CREATE INDEX tasks_waiting ON tasks USING gin ((doc -> 'state' -> 'waiting_for'))
    WITH (fastupdate = off)
    WHERE status = 'pending' AND ready_at IS NULL;
