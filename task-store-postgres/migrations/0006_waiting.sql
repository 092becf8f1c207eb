-- Schema version 6 of task-store-postgres: tasks that wait for other tasks.
--
-- A waiting task is a pending row whose `ready_at` is NULL (task-core's `Task::ready_at` is
-- None while `waiting_for` is not empty), with the awaited ids in its document. Claims never
-- see it (they read `ready_at <= now`); each claim first wakes the waiting tasks whose awaited
-- tasks have all ended, found through this index, which holds only the waiting rows.
CREATE INDEX tasks_waiting ON tasks (id) WHERE status = 'pending' AND ready_at IS NULL;
