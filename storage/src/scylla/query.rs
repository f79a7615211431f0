//! Running statements: paged reads, lightweight-transaction outcomes, and
//! logged batches of upserts.

use std::ops::ControlFlow;

use scylla::client::session::Session;
use scylla::deserialize::row::DeserializeRow;
use scylla::response::query_result::QueryResult;
use scylla::response::PagingState;
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlValue, Row};

use super::convert::{decoding, execution};
use crate::StoreError;

/// Every row a statement returns, page by page (the statement's `LIMIT`, if
/// any, bounds the total).
pub(crate) async fn fetch_all<R>(
    session: &Session,
    statement: &PreparedStatement,
    values: impl SerializeRow,
    what: &str,
) -> Result<Vec<R>, StoreError>
where
    R: for<'frame, 'metadata> DeserializeRow<'frame, 'metadata>,
{
    let mut out = Vec::new();
    let mut paging = PagingState::start();
    loop {
        let (result, response) =
            session.execute_single_page(statement, &values, paging).await.map_err(|e| execution(what, e))?;
        let rows = result.into_rows_result().map_err(|e| decoding(what, e))?;
        for row in rows.rows::<R>().map_err(|e| decoding(what, e))? {
            out.push(row.map_err(|e| decoding(what, e))?);
        }
        match response.into_paging_control_flow() {
            ControlFlow::Break(()) => return Ok(out),
            ControlFlow::Continue(next) => paging = next,
        }
    }
}

/// The first row a statement returns, if any.
pub(crate) async fn fetch_one<R>(
    session: &Session,
    statement: &PreparedStatement,
    values: impl SerializeRow,
    what: &str,
) -> Result<Option<R>, StoreError>
where
    R: for<'frame, 'metadata> DeserializeRow<'frame, 'metadata>,
{
    let result = session.execute_unpaged(statement, values).await.map_err(|e| execution(what, e))?;
    let rows = result.into_rows_result().map_err(|e| decoding(what, e))?;
    rows.maybe_first_row::<R>().map_err(|e| decoding(what, e))
}

/// Runs a lightweight transaction and says whether it applied.
pub(crate) async fn conditional(
    session: &Session,
    statement: &PreparedStatement,
    values: impl SerializeRow,
    what: &str,
) -> Result<bool, StoreError> {
    let result = session.execute_unpaged(statement, values).await.map_err(|e| execution(what, e))?;
    applied(result, what)
}

/// Reads the `[applied]` column of a lightweight transaction's result. The
/// other columns (the existing row, which ScyllaDB returns even when the
/// condition held) are ignored: callers that need the row read it at SERIAL.
fn applied(result: QueryResult, what: &str) -> Result<bool, StoreError> {
    let rows = result.into_rows_result().map_err(|e| decoding(what, e))?;
    let (index, _) = rows
        .column_specs()
        .get_by_name("[applied]")
        .ok_or_else(|| decoding(what, "no [applied] column in a conditional result"))?;
    let row: Row = rows.single_row().map_err(|e| decoding(what, e))?;
    match row.columns.get(index) {
        Some(Some(CqlValue::Boolean(applied))) => Ok(*applied),
        other => Err(decoding(what, format!("[applied] is {other:?}"))),
    }
}

/// Upserts to run together, each with its values.
#[derive(Default)]
pub(crate) struct Writes<'a> {
    items: Vec<(&'a PreparedStatement, Vec<CqlValue>)>,
}

/// Largest estimated size of one logged batch (ScyllaDB warns from 128 KiB
/// and rejects from 1 MiB by default).
const MAX_BATCH_BYTES: usize = 64 * 1024;

impl<'a> Writes<'a> {
    /// Adds one statement.
    pub(crate) fn push(&mut self, statement: &'a PreparedStatement, values: Vec<CqlValue>) {
        self.items.push((statement, values));
    }

    /// Runs every write as logged batches (each applied all-or-nothing by
    /// the cluster's batchlog) of at most [`MAX_BATCH_BYTES`], in order.
    /// Every write is an idempotent upsert, so a failed run may be repeated.
    pub(crate) async fn run(self, session: &Session, what: &str) -> Result<(), StoreError> {
        let mut batch = Batch::new(BatchType::Logged);
        batch.set_is_idempotent(true);
        let mut values: Vec<Vec<CqlValue>> = Vec::new();
        let mut size = 0;
        for (statement, row) in self.items {
            let row_size = row.iter().map(estimated_size).sum::<usize>();
            if !values.is_empty() && size + row_size > MAX_BATCH_BYTES {
                session.batch(&batch, &values).await.map_err(|e| execution(what, e))?;
                batch = Batch::new(BatchType::Logged);
                batch.set_is_idempotent(true);
                values.clear();
                size = 0;
            }
            batch.append_statement(statement.clone());
            values.push(row);
            size += row_size;
        }
        if !values.is_empty() {
            session.batch(&batch, &values).await.map_err(|e| execution(what, e))?;
        }
        Ok(())
    }

    /// Whether nothing was added.
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

fn estimated_size(value: &CqlValue) -> usize {
    match value {
        CqlValue::Text(s) => s.len() + 4,
        CqlValue::Blob(b) => b.len() + 4,
        _ => 12,
    }
}
