//! What the server tasks and the [`crate::FakeBitrix24`] handle share, and the operations both
//! the library API and the `/_fake/` endpoints perform on it.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::Value;

use crate::clock::Clock;
use crate::config::{AppSpec, FakeConfig, PortalSpec};
use crate::error::FakeError;
use crate::events::{self, EventOptions, Outgoing};
use crate::rate_limit::RateLimit;
use crate::records::{
    Binding, CallKind, CallRecord, Delivery, HandlerResponse, InstallCredentials, InstallDelivery,
    PortalInfo,
};
use crate::world::{Settings, World};

pub(crate) struct Shared {
    pub settings: Settings,
    pub config: FakeConfig,
    pub clock: Clock,
    pub client: reqwest::Client,
    world: Mutex<World>,
}

impl Shared {
    /// Builds the state from the configuration; returns the configured portals' credentials.
    pub(crate) fn new(
        settings: Settings,
        config: FakeConfig,
        client: reqwest::Client,
    ) -> Result<(Self, Vec<InstallCredentials>), FakeError> {
        let clock = Clock::new(config.freeze_clock);
        let (world, initial) = populate(&settings, &config, clock.now_secs())?;
        let shared = Shared {
            settings,
            config,
            clock,
            client,
            world: Mutex::new(world),
        };
        Ok((shared, initial))
    }

    /// The state, locked. A panic while locked cannot leave it half-changed in a way that
    /// matters to a test double, so a poisoned lock is simply taken over.
    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn add_app(&self, spec: AppSpec) -> Result<(), FakeError> {
        self.world().add_app(spec)
    }

    pub(crate) fn add_portal(&self, spec: PortalSpec) -> Result<InstallCredentials, FakeError> {
        let now = self.clock.now_secs();
        self.world().add_portal(&self.settings, now, spec)
    }

    pub(crate) fn portals(&self) -> Vec<PortalInfo> {
        let world = self.world();
        world
            .portals
            .keys()
            .filter_map(|m| world.portal_info(&self.settings, m).ok())
            .collect()
    }

    pub(crate) fn portal(&self, member_id: &str) -> Result<PortalInfo, FakeError> {
        self.world().portal_info(&self.settings, member_id)
    }

    pub(crate) fn calls(&self) -> Vec<CallRecord> {
        self.world().calls()
    }

    pub(crate) fn bindings(&self, member_id: &str) -> Result<Vec<Binding>, FakeError> {
        Ok(self.world().portal(member_id)?.bindings.clone())
    }

    pub(crate) fn deliveries(&self, member_id: &str) -> Result<Vec<Delivery>, FakeError> {
        Ok(self
            .world()
            .portal(member_id)?
            .deliveries
            .iter()
            .cloned()
            .collect())
    }

    pub(crate) fn expire_access_tokens(&self, member_id: &str) -> Result<usize, FakeError> {
        let now = self.clock.now_secs();
        self.world().expire_access(member_id, now)
    }

    pub(crate) fn revoke_refresh_tokens(&self, member_id: &str) -> Result<usize, FakeError> {
        self.world().revoke_refresh(member_id)
    }

    pub(crate) fn rotate_application_token(&self, member_id: &str) -> Result<String, FakeError> {
        self.world()
            .rotate_application_token(&self.settings, member_id)
    }

    pub(crate) fn set_rate_limit(
        &self,
        member_id: Option<&str>,
        limit: Option<RateLimit>,
    ) -> Result<(), FakeError> {
        if limit.is_some_and(|l| !l.is_valid()) {
            return Err(FakeError::InvalidInput(
                "rate limit: drain_per_second ≥ 0 and capacity ≥ 1".into(),
            ));
        }
        let mut world = self.world();
        match member_id {
            Some(m) => world.set_rate_limit(m, limit),
            None => {
                world.set_default_rate_limit(limit);
                Ok(())
            }
        }
    }

    pub(crate) fn advance_clock(&self, by: Duration) {
        self.clock.advance(by);
    }

    pub(crate) fn reset(&self) -> Result<Vec<InstallCredentials>, FakeError> {
        self.clock.reset();
        let (world, initial) = populate(&self.settings, &self.config, self.clock.now_secs())?;
        *self.world() = world;
        Ok(initial)
    }

    pub(crate) async fn send_event(
        &self,
        member_id: &str,
        event: &str,
        data: &Value,
        options: EventOptions,
    ) -> Result<Vec<HandlerResponse>, FakeError> {
        let now = self.clock.now_secs();
        let outgoing = events::prepare_event(
            &mut self.world(),
            &self.settings,
            now,
            member_id,
            event,
            data,
            options,
        )?;
        let mut answers = Vec::with_capacity(outgoing.len());
        for out in &outgoing {
            answers.push(self.deliver(out).await);
        }
        Ok(answers)
    }

    pub(crate) async fn install(
        &self,
        member_id: &str,
        url: &str,
    ) -> Result<InstallDelivery, FakeError> {
        let now = self.clock.now_secs();
        let (credentials, out) =
            events::prepare_install(&mut self.world(), &self.settings, now, member_id, url)?;
        let response = self.deliver(&out).await;
        Ok(InstallDelivery {
            credentials,
            response,
        })
    }

    pub(crate) async fn uninstall(
        &self,
        member_id: &str,
        clean: bool,
    ) -> Result<Vec<HandlerResponse>, FakeError> {
        let now = self.clock.now_secs();
        let outgoing =
            events::prepare_uninstall(&mut self.world(), &self.settings, now, member_id, clean)?;
        let mut answers = Vec::with_capacity(outgoing.len());
        for out in &outgoing {
            answers.push(self.deliver(out).await);
        }
        Ok(answers)
    }

    /// POSTs one event (the state is not locked meanwhile: the handler may call back) and logs it.
    async fn deliver(&self, out: &Outgoing) -> HandlerResponse {
        let answer = events::post(&self.client, out).await;
        let outcome = match (answer.status, &answer.error) {
            (Some(s), _) if (200..300).contains(&s) => "ok".to_string(),
            (Some(s), _) => format!("http_{s}"),
            (None, _) => "unreachable".to_string(),
        };
        let params = serde_json::json!({"url": out.url, "event_handler_id": out.handler_id});
        self.world().log(
            self.clock.now(),
            CallKind::Event,
            Some(&out.member_id),
            &out.event,
            params,
            answer.status,
            &outcome,
            None,
        );
        answer
    }
}

fn populate(
    settings: &Settings,
    config: &FakeConfig,
    now: i64,
) -> Result<(World, Vec<InstallCredentials>), FakeError> {
    let mut world = World::new(config.rate_limit);
    for app in &config.apps {
        world.add_app(app.clone())?;
    }
    let initial = config
        .portals
        .iter()
        .map(|p| world.add_portal(settings, now, p.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((world, initial))
}
