//! `centralino.v1.NumberProvisioningService`.

use centralino_api::v1 as pb;
use pb::number_provisioning_service_server::NumberProvisioningService as NumbersRpc;
use tonic::{Request, Response, Status};

use super::{auth::principal, convert::timestamp};
use crate::{
    auth::Access,
    domain::{
        AnswerMode, LinkState, ManagedNumber, OrderId, PhoneNumber, TwilioNumberSid, Violations,
        forwarding::{ForwardingCode, LineKind},
    },
    services::{
        ServiceError,
        numbers::{Check, CheckResult, NumbersService},
    },
};

#[derive(Debug, Clone)]
pub struct NumbersApi {
    numbers: NumbersService,
}

impl NumbersApi {
    pub fn new(numbers: NumbersService) -> Self {
        Self { numbers }
    }
}

fn parse_order_id(id: &str) -> Result<OrderId, ServiceError> {
    OrderId::parse(id).map_err(|err| ServiceError::invalid("order_id", err.to_string()))
}

#[tonic::async_trait]
impl NumbersRpc for NumbersApi {
    async fn assign_number(
        &self,
        request: Request<pb::AssignNumberRequest>,
    ) -> Result<Response<pb::AssignNumberResponse>, Status> {
        principal(&request)?.authorize(Access::AdminWrite)?;
        let pb::AssignNumberRequest {
            order_id,
            phone_number,
            twilio_sid,
        } = request.into_inner();
        let mut v = Violations::new();
        let order_id = v.check("order_id", OrderId::parse(&order_id));
        let number = v.check("phone_number", PhoneNumber::parse(&phone_number));
        let sid = if twilio_sid.trim().is_empty() {
            Some(None)
        } else {
            v.check("twilio_sid", TwilioNumberSid::parse(&twilio_sid))
                .map(Some)
        };
        let (Some(order_id), Some(number), Some(sid)) = (order_id, number, sid) else {
            return Err(ServiceError::InvalidArgument(v.into_vec()).into());
        };
        let managed = self.numbers.assign(order_id, number, sid).await?;
        Ok(Response::new(pb::AssignNumberResponse {
            number: Some(number_to_pb(&managed)),
        }))
    }

    async fn get_number(
        &self,
        request: Request<pb::GetNumberRequest>,
    ) -> Result<Response<pb::GetNumberResponse>, Status> {
        let caller = principal(&request)?;
        let order_id = parse_order_id(&request.get_ref().order_id)?;
        caller.authorize(Access::ReadOrder(order_id))?;
        let managed = self.numbers.get(order_id).await?;
        Ok(Response::new(pb::GetNumberResponse {
            number: Some(number_to_pb(&managed)),
        }))
    }

    async fn link_number(
        &self,
        request: Request<pb::LinkNumberRequest>,
    ) -> Result<Response<pb::LinkNumberResponse>, Status> {
        principal(&request)?.authorize(Access::AdminWrite)?;
        let order_id = parse_order_id(&request.get_ref().order_id)?;
        let managed = self.numbers.link(order_id).await?;
        Ok(Response::new(pb::LinkNumberResponse {
            number: Some(number_to_pb(&managed)),
        }))
    }

    async fn release_number(
        &self,
        request: Request<pb::ReleaseNumberRequest>,
    ) -> Result<Response<pb::ReleaseNumberResponse>, Status> {
        principal(&request)?.authorize(Access::AdminWrite)?;
        let pb::ReleaseNumberRequest {
            order_id,
            also_release_in_twilio,
        } = request.into_inner();
        let order_id = parse_order_id(&order_id)?;
        let (managed, codes) = self
            .numbers
            .release(order_id, also_release_in_twilio)
            .await?;
        Ok(Response::new(pb::ReleaseNumberResponse {
            number: Some(number_to_pb(&managed)),
            deactivation_codes: codes.iter().map(code_to_pb).collect(),
        }))
    }

    async fn verify_number(
        &self,
        request: Request<pb::VerifyNumberRequest>,
    ) -> Result<Response<pb::VerifyNumberResponse>, Status> {
        let caller = principal(&request)?;
        let order_id = parse_order_id(&request.get_ref().order_id)?;
        caller.authorize(Access::ReadOrder(order_id))?;
        let checks = self.numbers.verify(order_id).await?;
        Ok(Response::new(pb::VerifyNumberResponse {
            checks: checks.iter().map(check_to_pb).collect(),
        }))
    }

    async fn get_forwarding_instructions(
        &self,
        request: Request<pb::GetForwardingInstructionsRequest>,
    ) -> Result<Response<pb::GetForwardingInstructionsResponse>, Status> {
        let caller = principal(&request)?;
        let pb::GetForwardingInstructionsRequest {
            order_id,
            no_answer_seconds,
        } = request.into_inner();
        let order_id = parse_order_id(&order_id)?;
        caller.authorize(Access::ReadOrder(order_id))?;
        let seconds = match no_answer_seconds {
            0 => 20,
            s @ 5..=30 => u8::try_from(s).unwrap_or(20),
            _ => {
                return Err(ServiceError::invalid(
                    "no_answer_seconds",
                    "must be between 5 and 30 (or 0 for the default of 20)",
                )
                .into());
            }
        };
        let (landline, found) = self.numbers.forwarding(order_id, seconds).await?;
        Ok(Response::new(pb::GetForwardingInstructionsResponse {
            landline_number: landline.to_string(),
            target_number: found.target.to_string(),
            line_kind: match found.line_kind {
                LineKind::Mobile => pb::LineKind::Mobile,
                LineKind::Fixed => pb::LineKind::Fixed,
            } as i32,
            carrier: super::orders::carrier_to_pb(found.carrier) as i32,
            activate: found.activate.iter().map(code_to_pb).collect(),
            check: found.check.iter().map(code_to_pb).collect(),
            deactivate: found.deactivate.iter().map(code_to_pb).collect(),
            notes: found.notes,
        }))
    }
}

pub fn number_to_pb(n: &ManagedNumber) -> pb::PhoneNumberAssignment {
    pb::PhoneNumberAssignment {
        phone_number: n.number.to_string(),
        order_id: n.order_id.map(|o| o.to_string()).unwrap_or_default(),
        twilio_sid: n
            .twilio_sid
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default(),
        vapi_phone_number_id: n.vapi_phone_number_id.clone().unwrap_or_default(),
        link_state: match n.link_state {
            LinkState::Pending => pb::LinkState::Pending,
            LinkState::Linked => pb::LinkState::Linked,
            LinkState::Failed => pb::LinkState::Failed,
            LinkState::Released => pb::LinkState::Released,
        } as i32,
        link_reason: n.link_reason.clone().unwrap_or_default(),
        answer_mode: match n.answer_mode {
            AnswerMode::Assistant => pb::AnswerMode::Assistant,
            AnswerMode::AssistantRequest => pb::AnswerMode::AssistantRequest,
        } as i32,
        link_attempts: n.link_attempts,
        next_link_time: n.next_link_at.map(timestamp),
        assign_time: n.assigned_at.map(timestamp),
        link_time: n.linked_at.map(timestamp),
    }
}

pub fn code_to_pb(code: &ForwardingCode) -> pb::ForwardingCode {
    pb::ForwardingCode {
        purpose: code.purpose.as_str().to_ascii_lowercase(),
        code: code.code.clone(),
        description: code.description.clone(),
    }
}

pub fn check_to_pb(check: &Check) -> pb::Check {
    pb::Check {
        name: check.name.to_owned(),
        result: match check.result {
            CheckResult::Pass => pb::CheckResult::Pass,
            CheckResult::Fail => pb::CheckResult::Fail,
            CheckResult::Declared => pb::CheckResult::Declared,
            CheckResult::Unknown => pb::CheckResult::Unknown,
        } as i32,
        detail: check.detail.clone(),
        remedy: check.remedy.clone(),
    }
}
