//! An Arrow Flight SQL server over a session ([`serve`], `metaxy-sql serve`): BI tools and ADBC
//! drivers send SQL, which runs exactly as `SessionContext::sql` runs it.
//!
//! The server answers queries (`CommandStatementQuery`: the statement is planned when its
//! `FlightInfo` is asked for and runs when its ticket is fetched), updates
//! (`CommandStatementUpdate`: the affected row count) and prepared statements without
//! parameters; every other Flight SQL command is refused as `unimplemented`. Every client shares
//! the one session: what one creates or `SET`s, the others see.
//!
//! Requests are authenticated as a worker's are ([`ClusterSecurity`]): with a token configured,
//! each must carry `authorization: Bearer <token>`; without one, the server only listens on a
//! loopback address. Given a certificate and key (`--tls-cert`, `--tls-key`), it speaks TLS,
//! and given a CA (`--tls-ca`), it requires client certificates the CA signed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandPreparedStatementQuery, CommandStatementQuery,
    CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, IpcMessage, SchemaAsIpc, Ticket,
};
use bytes::Bytes;
use datafusion::arrow::array::{Array, RecordBatch, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use datafusion::error::DataFusionError;
use datafusion::prelude::{DataFrame, SessionContext};
use futures::TryStreamExt;
use prost::Message;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use crate::distributed::ClusterSecurity;
use crate::error::{without_backtrace, MetaxyError, Result};

/// At most this many planned statements wait for their ticket to be fetched; past it, the
/// oldest is forgotten (its ticket is then refused as unknown).
const MAX_PENDING_STATEMENTS: usize = 1024;
/// At most this many prepared statements are kept open; past it, the oldest is closed.
const MAX_PREPARED_STATEMENTS: usize = 1024;

/// The Flight SQL service over one [`SessionContext`]: SQL goes to `ctx.sql`, results go back
/// as Arrow record batches. [`serve`] runs it behind the token check; embedders may mount it in
/// their own tonic server with [`SessionService::into_server`].
///
/// ```
/// use datafusion_metaxy::flight_sql::SessionService;
/// let ctx = datafusion_metaxy::new_context(Default::default())?;
/// let _server = SessionService::new(ctx).into_server();
/// # Ok::<(), datafusion_metaxy::MetaxyError>(())
/// ```
pub struct SessionService {
    ctx: SessionContext,
    /// Planned statements, by the handle in their ticket; taken by the ticket's `DoGet`.
    statements: Handles<DataFrame>,
    /// The SQL of open prepared statements, by handle.
    prepared: Handles<String>,
}

impl SessionService {
    /// The service over `ctx`.
    pub fn new(ctx: SessionContext) -> Self {
        Self {
            ctx,
            statements: Handles::new(MAX_PENDING_STATEMENTS),
            prepared: Handles::new(MAX_PREPARED_STATEMENTS),
        }
    }

    /// The gRPC service, without authentication (see [`serve`] for the token check).
    pub fn into_server(self) -> FlightServiceServer<Self> {
        FlightServiceServer::new(self)
    }

    /// `sql` planned by the session (DDL such as `CREATE TABLE` runs here, as with
    /// `SessionContext::sql`).
    async fn plan(&self, sql: &str) -> std::result::Result<DataFrame, Status> {
        self.ctx.sql(sql).await.map_err(planning_error)
    }

    /// A `FlightInfo` for `df`: its schema and one endpoint whose ticket runs it.
    fn statement_info(
        &self,
        df: DataFrame,
        descriptor: FlightDescriptor,
    ) -> std::result::Result<FlightInfo, Status> {
        let schema = df.schema().as_arrow().clone();
        let handle = self.statements.insert(df);
        let ticket = TicketStatementQuery {
            statement_handle: handle,
        };
        let endpoint =
            FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec()));
        Ok(FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(|e| Status::internal(format!("cannot encode the result schema: {e}")))?
            .with_endpoint(endpoint)
            .with_descriptor(descriptor))
    }
}

#[tonic::async_trait]
impl FlightSqlService for SessionService {
    type FlightService = Self;

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        let df = self.plan(&query.query).await?;
        Ok(Response::new(
            self.statement_info(df, request.into_inner())?,
        ))
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        let sql = self
            .prepared
            .get(&query.prepared_statement_handle)
            .ok_or_else(|| Status::not_found("unknown or closed prepared statement"))?;
        let df = self.plan(&sql).await?;
        Ok(Response::new(
            self.statement_info(df, request.into_inner())?,
        ))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> std::result::Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let df = self
            .statements
            .take(&ticket.statement_handle)
            .ok_or_else(|| {
                Status::not_found(
                    "unknown statement ticket: a ticket runs its statement once, and is forgotten \
                 when many newer statements wait",
                )
            })?;
        let stream = df.execute_stream().await.map_err(execution_error)?;
        let schema = stream.schema();
        let batches = stream.map_err(|e| FlightError::Tonic(Box::new(execution_error(e))));
        let data = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map_err(Status::from);
        Ok(Response::new(Box::pin(data)))
    }

    async fn do_put_statement_update(
        &self,
        command: CommandStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> std::result::Result<i64, Status> {
        let batches = self
            .plan(&command.query)
            .await?
            .collect()
            .await
            .map_err(execution_error)?;
        Ok(affected_rows(&batches))
    }

    async fn do_put_prepared_statement_query(
        &self,
        _query: CommandPreparedStatementQuery,
        _request: Request<PeekableFlightDataStream>,
    ) -> std::result::Result<DoPutPreparedStatementResult, Status> {
        Err(Status::unimplemented(
            "parameters cannot be bound to prepared statements on this server: write the \
             values into the SQL",
        ))
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        _request: Request<Action>,
    ) -> std::result::Result<ActionCreatePreparedStatementResult, Status> {
        // Planned without running anything (no DDL runs before the statement is executed).
        let plan = self
            .ctx
            .state()
            .create_logical_plan(&query.query)
            .await
            .map_err(planning_error)?;
        let dataset_schema = ipc_schema(plan.schema().as_arrow())?;
        let handle = self.prepared.insert(query.query);
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle,
            dataset_schema,
            parameter_schema: Bytes::new(),
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> std::result::Result<(), Status> {
        // Closing a statement that is already closed (or was forgotten) is no error.
        self.prepared.take(&query.prepared_statement_handle);
        Ok(())
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// The rows a statement affected: the sum of the `count` column of a DML result (DataFusion's
/// `INSERT`, `DELETE`, `COPY` return one), else the number of rows it returned.
fn affected_rows(batches: &[RecordBatch]) -> i64 {
    let is_count = batches.first().is_some_and(|b| {
        let schema = b.schema();
        schema.fields().len() == 1
            && schema.field(0).name() == "count"
            && schema.field(0).data_type() == &DataType::UInt64
    });
    let total: u64 = if is_count {
        batches
            .iter()
            .filter_map(|b| b.column(0).as_any().downcast_ref::<UInt64Array>())
            .flat_map(|counts| counts.iter().flatten())
            .sum()
    } else {
        batches.iter().map(|b| b.num_rows() as u64).sum()
    };
    i64::try_from(total).unwrap_or(i64::MAX)
}

/// `schema` as an IPC-encapsulated schema message (a prepared statement's dataset schema).
fn ipc_schema(schema: &Schema) -> std::result::Result<Bytes, Status> {
    let options = IpcWriteOptions::default();
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &options)
        .try_into()
        .map_err(|e| Status::internal(format!("cannot encode the result schema: {e}")))?;
    Ok(bytes)
}

/// A statement that does not plan: the client's to fix, with DataFusion's message.
fn planning_error(e: DataFusionError) -> Status {
    Status::invalid_argument(without_backtrace(&e.to_string()))
}

/// A statement that failed while running, with DataFusion's message.
fn execution_error(e: DataFusionError) -> Status {
    let message = without_backtrace(&e.to_string());
    match e.find_root() {
        DataFusionError::ResourcesExhausted(_) => Status::resource_exhausted(message),
        _ => Status::internal(message),
    }
}

/// Values kept under random handles, at most `capacity` of them: past it, the oldest goes.
struct Handles<T> {
    capacity: usize,
    entries: Mutex<Entries<T>>,
}

struct Entries<T> {
    /// The number of values inserted so far.
    inserted: u64,
    /// Each value with its insertion number.
    values: HashMap<Bytes, (u64, T)>,
}

impl<T: Clone> Handles<T> {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new(Entries {
                inserted: 0,
                values: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries<T>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `value` under a new handle, forgetting the oldest value when full.
    fn insert(&self, value: T) -> Bytes {
        let handle = Bytes::from(uuid::Uuid::new_v4().to_string());
        let mut entries = self.lock();
        if entries.values.len() >= self.capacity {
            let oldest = entries
                .values
                .iter()
                .min_by_key(|(_, (number, _))| *number)
                .map(|(handle, _)| handle.clone());
            if let Some(oldest) = oldest {
                entries.values.remove(&oldest);
            }
        }
        entries.inserted += 1;
        let number = entries.inserted;
        entries.values.insert(handle.clone(), (number, value));
        handle
    }

    /// The value under `handle`, kept.
    fn get(&self, handle: &[u8]) -> Option<T> {
        self.lock()
            .values
            .get(handle)
            .map(|(_, value)| value.clone())
    }

    /// The value under `handle`, removed.
    fn take(&self, handle: &[u8]) -> Option<T> {
        self.lock().values.remove(handle).map(|(_, value)| value)
    }
}

/// Refuses to serve on `listen` beyond loopback without a token ([`serve`] checks it too; the
/// `metaxy-sql serve` command checks it before it opens anything).
pub fn check_listen(listen: SocketAddr, security: &ClusterSecurity) -> Result<()> {
    security.check_listen(
        listen,
        "run any SQL here (read and write the stores)",
        "the server and give its clients the token (`authorization: Bearer <token>`)",
    )
}

/// Serves `ctx` over Flight SQL on `listen` (port 0: any free port) until the process is
/// interrupted (Ctrl-C) or terminated; prints `metaxy-sql: serving Flight SQL on <address>` to
/// stderr once bound. Every request must carry the token of `security` when it has one;
/// without one, only a loopback `listen` is accepted. With a certificate in `security`, it
/// speaks TLS.
pub async fn serve(
    ctx: SessionContext,
    listen: SocketAddr,
    security: ClusterSecurity,
) -> Result<()> {
    check_listen(listen, &security)?;
    let failed = |source: Box<dyn std::error::Error + Send + Sync>| MetaxyError::Server {
        listen: listen.to_string(),
        source,
    };
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = security.server_tls()? {
        builder = builder.tls_config(tls).map_err(|e| failed(Box::new(e)))?;
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| failed(Box::new(e)))?;
    let bound = listener.local_addr().map_err(|e| failed(Box::new(e)))?;
    let service = InterceptedService::new(
        SessionService::new(ctx).into_server(),
        security.interceptor(),
    );
    eprintln!("metaxy-sql: serving Flight SQL on {bound}");
    builder
        .add_service(service)
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            stopped(),
        )
        .await
        .map_err(|e| failed(Box::new(e)))
}

/// Completes when the process is asked to stop: Ctrl-C (SIGINT) or, on Unix, SIGTERM.
async fn stopped() {
    let interrupted = async {
        if tokio::signal::ctrl_c().await.is_err() {
            // No handler could be installed: only SIGTERM (or a kill) stops the server.
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            tokio::select! {
                () = interrupted => {}
                _ = terminate.recv() => {}
            }
            return;
        }
    }
    interrupted.await;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{StringArray, UInt64Array};
    use datafusion::arrow::datatypes::Field;

    use super::*;

    fn batch(name: &str, column: Arc<dyn Array>) -> RecordBatch {
        let field = Field::new(name, column.data_type().clone(), true);
        RecordBatch::try_new(Arc::new(Schema::new(vec![field])), vec![column]).unwrap()
    }

    #[test]
    fn affected_rows_are_the_dml_count_else_the_rows() {
        let counts = batch("count", Arc::new(UInt64Array::from(vec![3, 4])));
        assert_eq!(affected_rows(&[counts]), 7);
        let rows = batch("name", Arc::new(StringArray::from(vec!["a", "b", "c"])));
        assert_eq!(affected_rows(&[rows.clone(), rows]), 6);
        assert_eq!(affected_rows(&[]), 0);
    }

    #[test]
    fn handles_forget_the_oldest_past_their_capacity() {
        let handles = Handles::new(2);
        let a = handles.insert("a");
        let b = handles.insert("b");
        assert_eq!(handles.get(&a), Some("a"));
        let c = handles.insert("c");
        assert_eq!(handles.get(&a), None);
        assert_eq!(handles.take(&b), Some("b"));
        assert_eq!(handles.take(&b), None);
        assert_eq!(handles.get(&c), Some("c"));
    }
}
