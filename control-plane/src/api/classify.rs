//! The classification API: log samples in, event types with their
//! classifications out, runs on request, and status with token usage.

use tero_classify::intake::MAX_RECORDS;
use tero_classify::{Category, Verdict};
use tero_proto::controlplane::classify_service_server::ClassifyService;
use tero_proto::controlplane::*;
use tonic::{Request, Response, Status};

use super::admin::Admin;
use super::http::{ProtoJson, ProtoQuery, QueryParams, admin_routes, unknown_param};
use super::{ApiError, State};
use crate::classify::catalog::{KIND_LOG, KIND_METRIC, KIND_SPAN};
use crate::classify::{RunError, Trigger};

/// A sample's body beyond this is refused: a log line is kilobytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// A whole `SubmitLogs` request at most (also the gRPC decoding limit).
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

fn check_choice<'a>(
    field: &str,
    value: &str,
    allowed: impl IntoIterator<Item = &'a str>,
) -> Result<(), ApiError> {
    if value.is_empty() {
        return Ok(());
    }
    let allowed: Vec<&str> = allowed.into_iter().collect();
    if allowed.contains(&value) {
        return Ok(());
    }
    Err(ApiError::invalid(
        field,
        format!("{value:?} is not one of {}", allowed.join(", ")),
    ))
}

impl From<RunError> for ApiError {
    fn from(err: RunError) -> Self {
        match err {
            RunError::Busy => ApiError::Unavailable {
                message: err.to_string(),
                retry_after_secs: 30,
            },
            RunError::Store(e) => ApiError::from(e),
        }
    }
}

impl Admin<'_> {
    pub async fn submit_logs(
        &self,
        req: SubmitLogsRequest,
    ) -> Result<SubmitLogsResponse, ApiError> {
        if req.service.trim().is_empty() {
            return Err(ApiError::invalid(
                "service",
                "is required: the service the records come from",
            ));
        }
        if req.records.len() > MAX_RECORDS {
            return Err(ApiError::invalid(
                "records",
                format!(
                    "{} records; send at most {MAX_RECORDS} per request",
                    req.records.len()
                ),
            ));
        }
        if let Some(i) = req
            .records
            .iter()
            .position(|r| r.body.len() > MAX_BODY_BYTES)
        {
            return Err(ApiError::invalid(
                &format!("records[{i}].body"),
                format!(
                    "{} bytes; a sample's body is at most {MAX_BODY_BYTES}",
                    req.records[i].body.len()
                ),
            ));
        }
        let service = req.service.trim();
        let submitted = self
            .state
            .classifications
            .submit_logs(service, &req.records)
            .await?;
        if submitted.accepted > 0 {
            // Counted templates can raise (or clear) log issues.
            self.state.analyst.events_changed(service);
        }
        Ok(submitted)
    }

    pub async fn list_event_types(
        &self,
        req: ListEventTypesRequest,
    ) -> Result<ListEventTypesResponse, ApiError> {
        check_choice("kind", &req.kind, [KIND_METRIC, KIND_LOG, KIND_SPAN])?;
        check_choice(
            "category",
            &req.category,
            Category::ALL.iter().map(|c| c.as_str()),
        )?;
        check_choice(
            "verdict",
            &req.verdict,
            Verdict::ALL.iter().map(|v| v.as_str()),
        )?;
        let event_types = self.state.classifications.list(&req).await?;
        Ok(ListEventTypesResponse { event_types })
    }

    pub async fn run_classification(
        &self,
        req: RunClassificationRequest,
    ) -> Result<ClassificationRun, ApiError> {
        Ok(self
            .state
            .classifications
            .run(Trigger::Api, &self.principal.actor(), req.force)
            .await?)
    }

    pub async fn classification_status(
        &self,
        req: GetClassificationStatusRequest,
    ) -> Result<ClassificationStatus, ApiError> {
        Ok(self.state.classifications.status(req.runs).await?)
    }
}

pub struct ClassifyGrpc(pub State);

macro_rules! grpc_methods {
    ($($method:ident($req:ty) -> $resp:ty => $call:ident;)*) => {
        #[tonic::async_trait]
        impl ClassifyService for ClassifyGrpc {
            $(
                async fn $method(&self, request: Request<$req>) -> Result<Response<$resp>, Status> {
                    let admin = super::admin::admin_of(&self.0, &request).await?;
                    Ok(Response::new(admin.$call(request.into_inner()).await?))
                }
            )*
        }
    };
}

grpc_methods! {
    submit_logs(SubmitLogsRequest) -> SubmitLogsResponse => submit_logs;
    list_event_types(ListEventTypesRequest) -> ListEventTypesResponse => list_event_types;
    run_classification(RunClassificationRequest) -> ClassificationRun => run_classification;
    get_classification_status(GetClassificationStatusRequest) -> ClassificationStatus => classification_status;
}

// The HTTP face of the classification API.
admin_routes! {
    post "/api/v1/logs" => submit_logs(ProtoJson<SubmitLogsRequest, MAX_REQUEST_BYTES>);
    get "/api/v1/event-types" => list_event_types(ProtoQuery<ListEventTypesRequest>);
    post "/api/v1/classify/runs" => run_classification(ProtoJson<RunClassificationRequest>);
    get "/api/v1/classify/status" =>
        classification_status(ProtoQuery<GetClassificationStatusRequest>);
}

impl QueryParams for ListEventTypesRequest {
    fn set(&mut self, key: &str, value: String) -> Result<(), ApiError> {
        match key {
            "service" => self.service = value,
            "kind" => self.kind = value,
            "category" => self.category = value,
            "verdict" => self.verdict = value,
            "unclassified" => {
                self.unclassified = value
                    .parse()
                    .map_err(|_| ApiError::invalid("unclassified", "is true or false"))?
            }
            _ => return Err(unknown_param(key)),
        }
        Ok(())
    }
}

impl QueryParams for GetClassificationStatusRequest {
    fn set(&mut self, key: &str, value: String) -> Result<(), ApiError> {
        match key {
            "runs" => {
                self.runs = value
                    .parse()
                    .map_err(|_| ApiError::invalid("runs", "is a number of runs"))?
            }
            _ => return Err(unknown_param(key)),
        }
        Ok(())
    }
}
