//! `centralino.v1.OrdersService`: proto <-> domain at the edge, then the
//! orders service. Every field is parsed here, with its request path.

use centralino_api::v1 as pb;
use pb::orders_service_server::OrdersService as OrdersRpc;
use tonic::{Request, Response, Status};

use super::{auth::principal, convert::timestamp};
use crate::{
    auth::Access,
    domain::{
        Agent, Carrier, Contact, EmailAddress, NewOrder, Order, OrderId, OrderPatch, OrderStatus,
        PhoneNumber, Postcode, RoutingZone, Violations,
        order::{AssistantId, MAX_ZONE_ENTRIES, MAX_ZONES, parse_name, parse_optional_name},
    },
    services::{
        OrdersService, ServiceError,
        numbers::{CheckResult, NumbersService},
        orders::OrderQuery,
    },
};

/// Field paths `UpdateOrder` accepts in its mask.
pub const UPDATABLE_PATHS: &[&str] = &[
    "display_name",
    "brand",
    "contact",
    "contact.name",
    "contact.email",
    "contact.phone",
    "landline_number",
    "carrier",
    "vapi_assistant_id",
    "default_agent",
    "zones",
    "status",
    "whatsapp_sender_declared",
];

#[derive(Debug, Clone)]
pub struct OrdersApi {
    orders: OrdersService,
    numbers: NumbersService,
}

impl OrdersApi {
    pub fn new(orders: OrdersService, numbers: NumbersService) -> Self {
        Self { orders, numbers }
    }
}

#[tonic::async_trait]
impl OrdersRpc for OrdersApi {
    async fn create_order(
        &self,
        request: Request<pb::CreateOrderRequest>,
    ) -> Result<Response<pb::CreateOrderResponse>, Status> {
        principal(&request)?.authorize(Access::AdminWrite)?;
        let pb::CreateOrderRequest { order } = request.into_inner();
        let new = parse_new_order(order).map_err(ServiceError::InvalidArgument)?;
        let order = self.orders.create(new).await?;
        Ok(Response::new(pb::CreateOrderResponse {
            order: Some(order_to_pb(&order)),
        }))
    }

    async fn get_order(
        &self,
        request: Request<pb::GetOrderRequest>,
    ) -> Result<Response<pb::GetOrderResponse>, Status> {
        let caller = principal(&request)?;
        let id = parse_id(&request.get_ref().id, "id")?;
        caller.authorize(Access::ReadOrder(id))?;
        let order = self.orders.get(id).await?;
        Ok(Response::new(pb::GetOrderResponse {
            order: Some(order_to_pb(&order)),
        }))
    }

    async fn list_orders(
        &self,
        request: Request<pb::ListOrdersRequest>,
    ) -> Result<Response<pb::ListOrdersResponse>, Status> {
        let caller = principal(&request)?;
        caller.authorize(Access::ListOrders)?;
        let pb::ListOrdersRequest {
            page_size,
            page_token,
            status,
            brand,
        } = request.into_inner();
        let mut violations = Violations::new();
        let status = violations.check("status", parse_status(status)).flatten();
        let brand = Some(brand.trim().to_owned()).filter(|b| !b.is_empty());
        if !violations.is_empty() {
            return Err(ServiceError::InvalidArgument(violations.into_vec()).into());
        }
        let page = self
            .orders
            .list(OrderQuery {
                status,
                brand,
                only: caller.order_scope(),
                page_size,
                page_token,
            })
            .await?;
        Ok(Response::new(pb::ListOrdersResponse {
            orders: page.orders.iter().map(order_to_pb).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_order(
        &self,
        request: Request<pb::UpdateOrderRequest>,
    ) -> Result<Response<pb::UpdateOrderResponse>, Status> {
        principal(&request)?.authorize(Access::AdminWrite)?;
        let pb::UpdateOrderRequest { order, update_mask } = request.into_inner();
        let (id, patch, etag) =
            parse_update(order, update_mask).map_err(ServiceError::InvalidArgument)?;
        let order = self.orders.update(id, patch, Some(&etag)).await?;
        Ok(Response::new(pb::UpdateOrderResponse {
            order: Some(order_to_pb(&order)),
        }))
    }

    async fn delete_order(
        &self,
        request: Request<pb::DeleteOrderRequest>,
    ) -> Result<Response<pb::DeleteOrderResponse>, Status> {
        principal(&request)?.authorize(Access::AdminWrite)?;
        let pb::DeleteOrderRequest { id, etag } = request.into_inner();
        let id = parse_id(&id, "id")?;
        let (order, released) = self.orders.cancel(id, Some(&etag)).await?;
        let (released_number, deactivation_codes) = match released {
            Some((number, codes)) => (
                number.number.to_string(),
                codes.iter().map(super::numbers::code_to_pb).collect(),
            ),
            None => (String::new(), Vec::new()),
        };
        Ok(Response::new(pb::DeleteOrderResponse {
            order: Some(order_to_pb(&order)),
            released_number,
            deactivation_codes,
        }))
    }

    async fn get_setup_status(
        &self,
        request: Request<pb::GetSetupStatusRequest>,
    ) -> Result<Response<pb::GetSetupStatusResponse>, Status> {
        let caller = principal(&request)?;
        let id = parse_id(&request.get_ref().id, "id")?;
        caller.authorize(Access::ReadOrder(id))?;
        let items = self.numbers.setup_status(id).await?;
        let complete = items.iter().all(|item| item.result == CheckResult::Pass);
        Ok(Response::new(pb::GetSetupStatusResponse {
            items: items.iter().map(super::numbers::check_to_pb).collect(),
            complete,
        }))
    }
}

fn parse_id(id: &str, field: &str) -> Result<OrderId, ServiceError> {
    OrderId::parse(id).map_err(|err| ServiceError::invalid(field, err.to_string()))
}

/// A status filter: UNSPECIFIED means none.
fn parse_status(value: i32) -> Result<Option<OrderStatus>, &'static str> {
    match pb::OrderStatus::try_from(value) {
        Ok(pb::OrderStatus::Unspecified) => Ok(None),
        Ok(pb::OrderStatus::Setup) => Ok(Some(OrderStatus::Setup)),
        Ok(pb::OrderStatus::Active) => Ok(Some(OrderStatus::Active)),
        Ok(pb::OrderStatus::Suspended) => Ok(Some(OrderStatus::Suspended)),
        Ok(pb::OrderStatus::Cancelled) => Ok(Some(OrderStatus::Cancelled)),
        Err(_) => Err("is not an OrderStatus value"),
    }
}

fn parse_carrier(value: i32) -> Result<Carrier, &'static str> {
    match pb::Carrier::try_from(value) {
        Ok(pb::Carrier::Unspecified) => Ok(Carrier::Unspecified),
        Ok(pb::Carrier::Tim) => Ok(Carrier::Tim),
        Ok(pb::Carrier::Vodafone) => Ok(Carrier::Vodafone),
        Ok(pb::Carrier::Windtre) => Ok(Carrier::WindTre),
        Ok(pb::Carrier::Iliad) => Ok(Carrier::Iliad),
        Ok(pb::Carrier::Fastweb) => Ok(Carrier::Fastweb),
        Ok(pb::Carrier::Other) => Ok(Carrier::Other),
        Err(_) => Err("is not a Carrier value"),
    }
}

fn parse_optional_phone(
    v: &mut Violations,
    field: &str,
    value: &str,
) -> Option<Option<PhoneNumber>> {
    if value.trim().is_empty() {
        Some(None)
    } else {
        v.check(field, PhoneNumber::parse(value)).map(Some)
    }
}

fn parse_optional_email(
    v: &mut Violations,
    field: &str,
    value: &str,
) -> Option<Option<EmailAddress>> {
    if value.trim().is_empty() {
        Some(None)
    } else {
        v.check(field, EmailAddress::parse(value)).map(Some)
    }
}

fn parse_assistant(v: &mut Violations, field: &str, value: &str) -> Option<Option<AssistantId>> {
    if value.trim().is_empty() {
        Some(None)
    } else {
        v.check(field, AssistantId::parse(value)).map(Some)
    }
}

fn parse_contact(v: &mut Violations, field: &str, contact: Option<pb::Contact>) -> Option<Contact> {
    let pb::Contact { name, email, phone } = contact.unwrap_or_default();
    let name = v.check(format!("{field}.name"), parse_optional_name(&name));
    let email = parse_optional_email(v, &format!("{field}.email"), &email);
    let phone = parse_optional_phone(v, &format!("{field}.phone"), &phone);
    Some(Contact {
        name: name?,
        email: email?,
        phone: phone?,
    })
}

/// An agent, or none when both of its fields are empty.
fn parse_optional_agent(
    v: &mut Violations,
    field: &str,
    agent: Option<pb::Agent>,
) -> Option<Option<Agent>> {
    match agent {
        Some(pb::Agent {
            name,
            whatsapp_number,
        }) if !(name.trim().is_empty() && whatsapp_number.trim().is_empty()) => parse_agent(
            v,
            field,
            Some(pb::Agent {
                name,
                whatsapp_number,
            }),
        )
        .map(Some),
        Some(_) | None => Some(None),
    }
}

fn parse_agent(v: &mut Violations, field: &str, agent: Option<pb::Agent>) -> Option<Agent> {
    let Some(pb::Agent {
        name,
        whatsapp_number,
    }) = agent
    else {
        v.push(field, "is required");
        return None;
    };
    let name = v.check(format!("{field}.name"), parse_name(&name));
    let whatsapp = v.check(
        format!("{field}.whatsapp_number"),
        PhoneNumber::parse(&whatsapp_number),
    );
    Some(Agent {
        name: name?,
        whatsapp: whatsapp?,
    })
}

fn parse_zones(
    v: &mut Violations,
    field: &str,
    zones: Vec<pb::RoutingZone>,
) -> Option<Vec<RoutingZone>> {
    if zones.len() > MAX_ZONES {
        v.push(field, format!("has more than {MAX_ZONES} zones"));
        return None;
    }
    let mut parsed = Vec::with_capacity(zones.len());
    let mut names: Vec<String> = Vec::new();
    let mut ok = true;
    for (i, zone) in zones.into_iter().enumerate() {
        let path = format!("{field}[{i}]");
        let pb::RoutingZone {
            name,
            postcodes,
            keywords,
            agent,
        } = zone;
        let name = v.check(format!("{path}.name"), parse_name(&name));
        if let Some(name) = &name {
            let folded = name.to_lowercase();
            if let Some(first) = names.iter().position(|n| *n == folded) {
                v.push(
                    format!("{path}.name"),
                    format!("repeats the name of {field}[{first}]"),
                );
            }
            names.push(folded);
        }
        if postcodes.is_empty() && keywords.is_empty() {
            v.push(path.clone(), "needs at least one postcode or keyword");
        }
        if postcodes.len() + keywords.len() > MAX_ZONE_ENTRIES {
            v.push(
                path.clone(),
                format!("has more than {MAX_ZONE_ENTRIES} postcodes and keywords"),
            );
        }
        let postcodes: Vec<Option<Postcode>> = postcodes
            .iter()
            .enumerate()
            .map(|(j, p)| v.check(format!("{path}.postcodes[{j}]"), Postcode::parse(p)))
            .collect();
        let keywords: Vec<Option<String>> = keywords
            .iter()
            .enumerate()
            .map(|(j, k)| v.check(format!("{path}.keywords[{j}]"), parse_name(k)))
            .collect();
        let agent = parse_agent(v, &format!("{path}.agent"), agent);
        match (
            name,
            postcodes.into_iter().collect::<Option<Vec<_>>>(),
            keywords.into_iter().collect::<Option<Vec<_>>>(),
            agent,
        ) {
            (Some(name), Some(postcodes), Some(keywords), Some(agent)) => {
                parsed.push(RoutingZone {
                    name,
                    postcodes,
                    keywords,
                    agent,
                })
            }
            _ => ok = false,
        }
    }
    ok.then_some(parsed)
}

fn parse_new_order(
    order: Option<pb::Order>,
) -> Result<NewOrder, Vec<crate::domain::FieldViolation>> {
    let mut v = Violations::new();
    let Some(order) = order else {
        v.push("order", "is required");
        return Err(v.into_vec());
    };
    // Output-only fields (id, status, times, etag) are ignored, as AIP-203 says.
    let pb::Order {
        display_name,
        brand,
        contact,
        landline_number,
        carrier,
        vapi_assistant_id,
        default_agent,
        zones,
        id: _,
        status: _,
        create_time: _,
        update_time: _,
        whatsapp_sender_declared,
        etag: _,
        cancel_time: _,
    } = order;
    let display_name = v.check("order.display_name", parse_name(&display_name));
    let brand = v.check("order.brand", parse_optional_name(&brand));
    let contact = parse_contact(&mut v, "order.contact", contact);
    let landline = parse_optional_phone(&mut v, "order.landline_number", &landline_number);
    let carrier = v.check("order.carrier", parse_carrier(carrier));
    let vapi_assistant_id = parse_assistant(&mut v, "order.vapi_assistant_id", &vapi_assistant_id);
    let default_agent = parse_optional_agent(&mut v, "order.default_agent", default_agent);
    let zones = parse_zones(&mut v, "order.zones", zones);
    match (
        display_name,
        brand,
        contact,
        landline,
        carrier,
        vapi_assistant_id,
        default_agent,
        zones,
    ) {
        (
            Some(display_name),
            Some(brand),
            Some(contact),
            Some(landline),
            Some(carrier),
            Some(vapi_assistant_id),
            Some(default_agent),
            Some(zones),
        ) if v.is_empty() => Ok(NewOrder {
            display_name,
            brand,
            contact,
            landline,
            carrier,
            vapi_assistant_id,
            default_agent,
            zones,
            whatsapp_sender_declared,
        }),
        _ => Err(v.into_vec()),
    }
}

/// The order id, the patch the mask names, and the etag to check.
fn parse_update(
    order: Option<pb::Order>,
    mask: Option<prost_types::FieldMask>,
) -> Result<(OrderId, OrderPatch, String), Vec<crate::domain::FieldViolation>> {
    let mut v = Violations::new();
    let Some(order) = order else {
        v.push("order", "is required");
        return Err(v.into_vec());
    };
    let id = v.check("order.id", OrderId::parse(&order.id));
    let paths = mask.map(|m| m.paths).unwrap_or_default();
    if paths.is_empty() {
        v.push(
            "update_mask",
            format!(
                "is required: name the fields to update ({})",
                UPDATABLE_PATHS.join(", ")
            ),
        );
    }
    let mut patch = OrderPatch::default();
    for (i, path) in paths.iter().enumerate() {
        match path.as_str() {
            "display_name" => {
                patch.display_name = v.check("order.display_name", parse_name(&order.display_name));
            }
            "brand" => patch.brand = v.check("order.brand", parse_optional_name(&order.brand)),
            "contact" => {
                if let Some(contact) = parse_contact(&mut v, "order.contact", order.contact.clone())
                {
                    patch.contact_name = Some(contact.name);
                    patch.contact_email = Some(contact.email);
                    patch.contact_phone = Some(contact.phone);
                }
            }
            "contact.name" => {
                let name = order
                    .contact
                    .as_ref()
                    .map(|c| c.name.as_str())
                    .unwrap_or("");
                patch.contact_name = v.check("order.contact.name", parse_optional_name(name));
            }
            "contact.email" => {
                let email = order
                    .contact
                    .as_ref()
                    .map(|c| c.email.as_str())
                    .unwrap_or("");
                patch.contact_email = parse_optional_email(&mut v, "order.contact.email", email);
            }
            "contact.phone" => {
                let phone = order
                    .contact
                    .as_ref()
                    .map(|c| c.phone.as_str())
                    .unwrap_or("");
                patch.contact_phone = parse_optional_phone(&mut v, "order.contact.phone", phone);
            }
            "landline_number" => {
                patch.landline =
                    parse_optional_phone(&mut v, "order.landline_number", &order.landline_number);
            }
            "carrier" => patch.carrier = v.check("order.carrier", parse_carrier(order.carrier)),
            "vapi_assistant_id" => {
                patch.vapi_assistant_id =
                    parse_assistant(&mut v, "order.vapi_assistant_id", &order.vapi_assistant_id);
            }
            "default_agent" => {
                patch.default_agent = parse_optional_agent(
                    &mut v,
                    "order.default_agent",
                    order.default_agent.clone(),
                );
            }
            "zones" => patch.zones = parse_zones(&mut v, "order.zones", order.zones.clone()),
            "whatsapp_sender_declared" => {
                patch.whatsapp_sender_declared = Some(order.whatsapp_sender_declared);
            }
            "status" => match parse_status(order.status) {
                Ok(Some(status)) => patch.status = Some(status),
                Ok(None) => v.push("order.status", "must be set when the mask names it"),
                Err(err) => v.push("order.status", err),
            },
            other => v.push(
                format!("update_mask.paths[{i}]"),
                format!(
                    "{other:?} is not an updatable field; allowed: {}",
                    UPDATABLE_PATHS.join(", ")
                ),
            ),
        }
    }
    match id {
        Some(id) if v.is_empty() => Ok((id, patch, order.etag)),
        _ => Err(v.into_vec()),
    }
}

pub fn order_to_pb(order: &Order) -> pb::Order {
    pb::Order {
        id: order.id.to_string(),
        display_name: order.display_name.clone(),
        brand: order.brand.clone(),
        contact: Some(pb::Contact {
            name: order.contact.name.clone(),
            email: order
                .contact
                .email
                .as_ref()
                .map(|e| e.as_str().to_owned())
                .unwrap_or_default(),
            phone: order
                .contact
                .phone
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        }),
        landline_number: order
            .landline
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        carrier: carrier_to_pb(order.carrier) as i32,
        vapi_assistant_id: order
            .vapi_assistant_id
            .map(|a| a.to_string())
            .unwrap_or_default(),
        default_agent: order.default_agent.as_ref().map(agent_to_pb),
        zones: order
            .zones
            .iter()
            .map(|zone| pb::RoutingZone {
                name: zone.name.clone(),
                postcodes: zone
                    .postcodes
                    .iter()
                    .map(|p| p.as_str().to_owned())
                    .collect(),
                keywords: zone.keywords.clone(),
                agent: Some(agent_to_pb(&zone.agent)),
            })
            .collect(),
        status: status_to_pb(order.status) as i32,
        create_time: Some(timestamp(order.created_at)),
        update_time: Some(timestamp(order.updated_at)),
        etag: order.etag(),
        cancel_time: order.cancelled_at.map(timestamp),
        whatsapp_sender_declared: order.whatsapp_sender_declared,
    }
}

fn agent_to_pb(agent: &Agent) -> pb::Agent {
    pb::Agent {
        name: agent.name.clone(),
        whatsapp_number: agent.whatsapp.to_string(),
    }
}

fn status_to_pb(status: OrderStatus) -> pb::OrderStatus {
    match status {
        OrderStatus::Setup => pb::OrderStatus::Setup,
        OrderStatus::Active => pb::OrderStatus::Active,
        OrderStatus::Suspended => pb::OrderStatus::Suspended,
        OrderStatus::Cancelled => pb::OrderStatus::Cancelled,
    }
}

pub fn carrier_to_pb(carrier: Carrier) -> pb::Carrier {
    match carrier {
        Carrier::Unspecified => pb::Carrier::Unspecified,
        Carrier::Tim => pb::Carrier::Tim,
        Carrier::Vodafone => pb::Carrier::Vodafone,
        Carrier::WindTre => pb::Carrier::Windtre,
        Carrier::Iliad => pb::Carrier::Iliad,
        Carrier::Fastweb => pb::Carrier::Fastweb,
        Carrier::Other => pb::Carrier::Other,
    }
}
