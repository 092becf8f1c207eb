//! The query of [`Client::list_items`](crate::Client::list_items).

/// Paging and filters of [`Client::list_items`](crate::Client::list_items).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemQuery {
    /// Page number from 1 (default 1).
    pub page_num: Option<u64>,
    /// Items per page, 1-1000 (default 50).
    pub page_size: Option<u64>,
    /// Include soft-deleted items.
    pub allow_deleted: bool,
    /// Only the children of this item (a season's episodes, a series' seasons).
    pub parent_id: Option<String>,
}

impl ItemQuery {
    /// The children of `parent_id`, first page, default size.
    pub fn children_of(parent_id: &str) -> Self {
        Self {
            parent_id: Some(parent_id.to_owned()),
            ..Self::default()
        }
    }

    /// The query parameters, in a stable order.
    pub(crate) fn params(&self) -> Vec<(String, String)> {
        let mut params = Vec::new();
        if let Some(page) = self.page_num {
            params.push(("page_num".to_owned(), page.to_string()));
        }
        if let Some(size) = self.page_size {
            params.push(("page_size".to_owned(), size.to_string()));
        }
        if self.allow_deleted {
            params.push(("allow_deleted".to_owned(), "true".to_owned()));
        }
        if let Some(parent) = &self.parent_id {
            params.push(("parent_id".to_owned(), parent.clone()));
        }
        params
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_are_asked_for_by_parent_id() {
        let query = ItemQuery {
            page_size: Some(10),
            ..ItemQuery::children_of("show s1")
        };
        assert_eq!(
            query.params(),
            [
                ("page_size".to_owned(), "10".to_owned()),
                ("parent_id".to_owned(), "show s1".to_owned())
            ]
        );
        assert!(ItemQuery::default().params().is_empty());
    }
}
