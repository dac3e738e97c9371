//! `centralino.v1.NotificationsService`.

use centralino_api::v1 as pb;
use pb::notifications_service_server::NotificationsService as NotificationsRpc;
use tonic::{Request, Response, Status};

use super::{auth::principal, calls::scoped_order, convert::timestamp};
use crate::{
    auth::{Access, Role},
    domain::{
        OrderId, PhoneNumber, Violations,
        notification::{self, Kind, MessageStatus, Route},
    },
    services::{
        NotificationsService, ServiceError,
        notifications::{NotificationView, Preview},
    },
    store::{entities::notification_attempt, notifications::NotificationFilter},
};

#[derive(Debug, Clone)]
pub struct NotificationsApi {
    notifications: NotificationsService,
}

impl NotificationsApi {
    pub fn new(notifications: NotificationsService) -> Self {
        Self { notifications }
    }
}

fn opt(s: String) -> Option<String> {
    Some(s.trim().to_owned()).filter(|s| !s.is_empty())
}

fn require_id(field: &str, id: &str) -> Result<String, ServiceError> {
    let id = id.trim();
    if id.is_empty() {
        Err(ServiceError::invalid(field, "is required"))
    } else if id.len() > 64 {
        Err(ServiceError::invalid(field, "is longer than 64 characters"))
    } else {
        Ok(id.to_owned())
    }
}

#[tonic::async_trait]
impl NotificationsRpc for NotificationsApi {
    async fn get_notification(
        &self,
        request: Request<pb::GetNotificationRequest>,
    ) -> Result<Response<pb::GetNotificationResponse>, Status> {
        let caller = principal(&request)?;
        if caller.role == Role::Ingest {
            caller.authorize(Access::AdminWrite)?;
        }
        let id = require_id("id", &request.into_inner().id)?;
        let found = self.notifications.get(&id).await?;
        let order = OrderId::parse(&found.row.order_id).ok();
        match order {
            Some(order) => caller.authorize(Access::ReadOrder(order))?,
            None => caller.authorize(Access::AdminWrite)?,
        }
        Ok(Response::new(pb::GetNotificationResponse {
            notification: Some(to_pb(&found)),
        }))
    }

    async fn list_notifications(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        let caller = principal(&request)?;
        caller.authorize(Access::ListOrders)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let order = match opt(r.order_id) {
            None => None,
            Some(id) => v.check("order_id", OrderId::parse(&id)),
        };
        let status = match pb::NotificationStatus::try_from(r.status) {
            Ok(pb::NotificationStatus::Unspecified) => None,
            Ok(s) => Some(status_from_pb(s)),
            Err(_) => {
                v.push("status", "is not a NotificationStatus value");
                None
            }
        };
        if !v.is_empty() {
            return Err(ServiceError::InvalidArgument(v.into_vec()).into());
        }
        let filter = NotificationFilter {
            order: scoped_order(&caller, order)?,
            call: opt(r.call_id),
            status,
        };
        let (rows, next_page_token) = self
            .notifications
            .list(filter, r.page_size, &r.page_token)
            .await?;
        Ok(Response::new(pb::ListNotificationsResponse {
            notifications: rows.iter().map(to_pb).collect(),
            next_page_token,
        }))
    }

    async fn retry_notification(
        &self,
        request: Request<pb::RetryNotificationRequest>,
    ) -> Result<Response<pb::RetryNotificationResponse>, Status> {
        principal(&request)?.authorize(Access::AdminWrite)?;
        let id = require_id("id", &request.into_inner().id)?;
        let retried = self.notifications.retry(&id).await?;
        Ok(Response::new(pb::RetryNotificationResponse {
            notification: Some(to_pb(&retried)),
        }))
    }

    async fn send_test_message(
        &self,
        request: Request<pb::SendTestMessageRequest>,
    ) -> Result<Response<pb::SendTestMessageResponse>, Status> {
        principal(&request)?.authorize(Access::AdminWrite)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let order = match opt(r.order_id) {
            None => {
                v.push("order_id", "is required");
                None
            }
            Some(id) => v.check("order_id", OrderId::parse(&id)),
        };
        let to = match opt(r.to) {
            None => None,
            Some(to) => v.check("to", PhoneNumber::parse(&to)),
        };
        let (Some(order), true) = (order, v.is_empty()) else {
            return Err(ServiceError::InvalidArgument(v.into_vec()).into());
        };
        let sent = self.notifications.send_test(order, to).await?;
        Ok(Response::new(pb::SendTestMessageResponse {
            notification: Some(to_pb(&sent)),
        }))
    }

    async fn preview_notification(
        &self,
        request: Request<pb::PreviewNotificationRequest>,
    ) -> Result<Response<pb::PreviewNotificationResponse>, Status> {
        let caller = principal(&request)?;
        caller.authorize(Access::ListOrders)?;
        let call_id = require_id("call_id", &request.into_inner().call_id)?;
        if let Some(own) = caller.order_scope() {
            // A viewer previews its own order's calls only.
            let preview_order = self.notifications.order_of_call(&call_id).await?;
            if preview_order != Some(own) {
                return Err(ServiceError::PermissionDenied {
                    message: "this viewer key is scoped to another order".to_owned(),
                }
                .into());
            }
        }
        let Preview {
            body,
            template_variables,
            destination,
            from,
        } = self.notifications.preview(&call_id).await?;
        Ok(Response::new(pb::PreviewNotificationResponse {
            body_length: i32::try_from(body.encode_utf16().count()).unwrap_or(i32::MAX),
            body,
            template_variables,
            to: destination
                .to
                .as_ref()
                .map(notification::whatsapp_address)
                .unwrap_or_default(),
            from: from
                .as_ref()
                .map(notification::whatsapp_address)
                .unwrap_or_default(),
            route: route_to_pb(destination.route).into(),
        }))
    }

    async fn record_message_status(
        &self,
        request: Request<pb::RecordMessageStatusRequest>,
    ) -> Result<Response<pb::RecordMessageStatusResponse>, Status> {
        principal(&request)?.authorize(Access::Ingest)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        if r.message_sid.trim().is_empty() {
            v.push("message_sid", "is required");
        } else if r.message_sid.trim().len() > 64 {
            v.push("message_sid", "is longer than 64 characters");
        }
        if r.message_status.trim().is_empty() {
            v.push("message_status", "is required");
        }
        if !v.is_empty() {
            return Err(ServiceError::InvalidArgument(v.into_vec()).into());
        }
        // Statuses outside the progression (receiving, received, …) change nothing.
        let Some(status) = MessageStatus::from_twilio(&r.message_status) else {
            return Ok(Response::new(pb::RecordMessageStatusResponse {
                applied: false,
                notification_id: String::new(),
            }));
        };
        let outcome = self
            .notifications
            .record_status(
                r.message_sid.trim(),
                status,
                Some(r.error_code).filter(|c| *c != 0),
                r.error_message.trim(),
                Some(r.notification_id.trim())
                    .filter(|id| !id.is_empty() && id.len() <= 64)
                    .map(|id| (id, r.attempt_number))
                    .filter(|(_, number)| *number > 0),
            )
            .await?;
        Ok(Response::new(pb::RecordMessageStatusResponse {
            applied: outcome.applied,
            notification_id: outcome.notification_id.unwrap_or_default(),
        }))
    }

    async fn record_inbound_message(
        &self,
        request: Request<pb::RecordInboundMessageRequest>,
    ) -> Result<Response<pb::RecordInboundMessageResponse>, Status> {
        principal(&request)?.authorize(Access::Ingest)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let agent = v.check("from", notification::parse_whatsapp(&r.from));
        let agency = v.check("to", notification::parse_whatsapp(&r.to));
        let (Some(agent), Some(agency), true) = (agent, agency, v.is_empty()) else {
            return Err(ServiceError::InvalidArgument(v.into_vec()).into());
        };
        let until = self.notifications.record_inbound(&agent, &agency).await?;
        Ok(Response::new(pb::RecordInboundMessageResponse {
            window_end_time: Some(timestamp(until)),
        }))
    }
}

fn to_pb(view: &NotificationView) -> pb::Notification {
    let n = &view.row;
    pb::Notification {
        id: n.id.clone(),
        order_id: n.order_id.clone(),
        call_id: n.call_id.clone().unwrap_or_default(),
        kind: match Kind::from_db(&n.kind) {
            Some(Kind::CallSummary) => pb::NotificationKind::CallSummary,
            Some(Kind::Test) => pb::NotificationKind::Test,
            None => pb::NotificationKind::Unspecified,
        }
        .into(),
        status: status_to_pb(&n.status).into(),
        reason_code: n.reason_code.clone().unwrap_or_default(),
        reason: n.reason.clone().unwrap_or_default(),
        from: n.from_address.clone().unwrap_or_default(),
        to: n.to_address.clone().unwrap_or_default(),
        route: Route::from_db(&n.route)
            .map_or(pb::NotificationRoute::Unspecified, route_to_pb)
            .into(),
        zone: n.zone.clone().unwrap_or_default(),
        body: n.body.clone(),
        template_variables: view.template_variables.clone(),
        attempt_count: n.attempts,
        next_attempt_time: (notification::Status::from_db(&n.status)
            == Some(notification::Status::Pending))
        .then(|| timestamp(n.next_attempt_at)),
        message_sid: n.message_sid.clone().unwrap_or_default(),
        create_time: Some(timestamp(n.created_at)),
        update_time: Some(timestamp(n.updated_at)),
        sent_time: n.sent_at.map(timestamp),
        delivered_time: n.delivered_at.map(timestamp),
        attempts: view.attempts.iter().map(attempt_to_pb).collect(),
    }
}

fn attempt_to_pb(a: &notification_attempt::Model) -> pb::NotificationAttempt {
    pb::NotificationAttempt {
        number: a.number,
        trigger: a.trigger.clone(),
        mode: a.mode.clone(),
        status: a.status.clone(),
        message_sid: a.message_sid.clone().unwrap_or_default(),
        error_code: a.error_code.unwrap_or(0),
        error_message: a.error_message.clone().unwrap_or_default(),
        create_time: Some(timestamp(a.created_at)),
        update_time: Some(timestamp(a.updated_at)),
    }
}

fn status_to_pb(s: &str) -> pb::NotificationStatus {
    use notification::Status;
    match Status::from_db(s) {
        Some(Status::Pending) => pb::NotificationStatus::Pending,
        Some(Status::Sent) => pb::NotificationStatus::Sent,
        Some(Status::Delivered) => pb::NotificationStatus::Delivered,
        Some(Status::Read) => pb::NotificationStatus::Read,
        Some(Status::Failed) => pb::NotificationStatus::Failed,
        None => pb::NotificationStatus::Unspecified,
    }
}

fn status_from_pb(s: pb::NotificationStatus) -> notification::Status {
    use notification::Status;
    match s {
        pb::NotificationStatus::Pending | pb::NotificationStatus::Unspecified => Status::Pending,
        pb::NotificationStatus::Sent => Status::Sent,
        pb::NotificationStatus::Delivered => Status::Delivered,
        pb::NotificationStatus::Read => Status::Read,
        pb::NotificationStatus::Failed => Status::Failed,
    }
}

fn route_to_pb(r: Route) -> pb::NotificationRoute {
    match r {
        Route::Zone => pb::NotificationRoute::Zone,
        Route::DefaultAgent => pb::NotificationRoute::DefaultAgent,
        Route::Fallback => pb::NotificationRoute::Fallback,
        Route::Explicit => pb::NotificationRoute::Explicit,
        Route::None => pb::NotificationRoute::None,
    }
}
