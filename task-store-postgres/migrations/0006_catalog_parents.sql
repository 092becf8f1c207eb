-- Schema version 6 of task-store-postgres: catalog items' parents (an episode's season, a
-- season's series), checked by every upsert and listed by parent.
--
-- `parent_id` mirrors the "parent_id" of the item document (NULL: none), so that an item's
-- children are found through an index: to list them, and to refuse a type change of an item
-- whose children could no longer have it as parent. No item had a parent before this version,
-- so there is nothing to copy from the documents.
--
-- Adding a nullable column without a default is a catalog-only change; the partial index only
-- holds items that have a parent.
ALTER TABLE catalog_items ADD COLUMN parent_id text COLLATE "C";
CREATE INDEX catalog_items_by_parent ON catalog_items (tenant, parent_id, inventory_id)
    WHERE parent_id IS NOT NULL;
