//! Power Source (0x002F): the lock's battery on endpoint 1 and the USB-C
//! emergency input (B-10.3) on endpoint 2, from the engine's published
//! power readings (B-10.1).
//!
//! ```text
//!  Status.battery_percent / battery_millivolts / low_battery ─► BatPercentRemaining (×2),
//!                                                              BatVoltage, BatChargeLevel
//!  Status.external_power ─────────────────────────────────────► USB-C WiredPresent, Status
//! ```
use rs_matter::dm::clusters::decl::power_source::{
    self, AttributeId, BatChargeLevelEnum, BatReplaceabilityEnum, Feature, PowerSourceStatusEnum,
    WiredCurrentTypeEnum,
};
use rs_matter::dm::{ArrayAttributeRead, Cluster, Dataver, EndptId, HandlerContext, ReadContext};
use rs_matter::error::{Error, ErrorCode};
use rs_matter::tlv::{Nullable, TLVBuilderParent, ToTLVArrayBuilder, ToTLVBuilder, Utf8StrBuilder};
use rs_matter::with;
use tokio::sync::watch;

use crate::core::Status;

/// Which of the lock's two power sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Battery,
    UsbC,
}

impl<const USB_C: bool> std::fmt::Debug for PowerSource<USB_C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PowerSource").finish_non_exhaustive()
    }
}

/// One power source; `USB_C` picks the instance (each has its own
/// attribute set, so each is its own type).
pub struct PowerSource<const USB_C: bool> {
    dataver: Dataver,
    /// The endpoint this cluster is on.
    endpoint: EndptId,
    /// The endpoint it powers (the lock's).
    powers: [EndptId; 1],
    status: watch::Receiver<Status>,
}

pub type Battery = PowerSource<false>;
pub type UsbC = PowerSource<true>;

pub const BATTERY_CLUSTER: Cluster<'static> = power_source::FULL_CLUSTER
    .with_features(Feature::BATTERY.bits() | Feature::REPLACEABLE.bits())
    .with_attrs(with!(
        required;
        AttributeId::BatVoltage
            | AttributeId::BatPercentRemaining
            | AttributeId::BatChargeLevel
            | AttributeId::BatReplacementNeeded
            | AttributeId::BatReplaceability
            | AttributeId::BatPresent
            | AttributeId::EndpointList
    ));

pub const USB_C_CLUSTER: Cluster<'static> = power_source::FULL_CLUSTER
    .with_features(Feature::WIRED.bits())
    .with_attrs(with!(
        required;
        AttributeId::WiredCurrentType | AttributeId::WiredPresent | AttributeId::EndpointList
    ));

impl<const USB_C: bool> PowerSource<USB_C> {
    pub const CLUSTER: Cluster<'static> = if USB_C {
        USB_C_CLUSTER
    } else {
        BATTERY_CLUSTER
    };

    pub fn new(
        dataver: Dataver,
        endpoint: EndptId,
        powers: EndptId,
        status: watch::Receiver<Status>,
    ) -> Self {
        PowerSource {
            dataver,
            endpoint,
            powers: [powers],
            status,
        }
    }

    const SOURCE: Source = if USB_C { Source::UsbC } else { Source::Battery };

    fn percent(&self) -> Option<u8> {
        self.status.borrow().battery_percent
    }

    /// Follow the readings: each change is an attribute report.
    async fn follow(&self, ctx: &impl HandlerContext) -> Result<(), Error> {
        let mut status = self.status.clone();
        let key = |s: &Status| {
            (
                s.battery_percent,
                s.battery_millivolts,
                s.low_battery,
                s.external_power,
            )
        };
        let mut seen = key(&status.borrow_and_update());
        while status.changed().await.is_ok() {
            let now = key(&status.borrow_and_update());
            if now != seen {
                seen = now;
                self.dataver.changed();
                ctx.notify_cluster_changed(self.endpoint, power_source::FULL_CLUSTER.id);
            }
        }
        core::future::pending().await
    }
}

/// Matter's battery percentage is in half percent.
pub fn half_percent(percent: Option<u8>) -> Nullable<u8> {
    Nullable::new(percent.map(|p| p.min(100) * 2))
}

/// B-10.1: low battery is a warning; a battery at zero is critical.
pub fn charge_level(percent: Option<u8>, low: bool) -> BatChargeLevelEnum {
    match (percent, low) {
        (Some(0), _) => BatChargeLevelEnum::Critical,
        (_, true) => BatChargeLevelEnum::Warning,
        _ => BatChargeLevelEnum::OK,
    }
}

impl<const USB_C: bool> power_source::ClusterHandler for PowerSource<USB_C> {
    const CLUSTER: Cluster<'static> = Self::CLUSTER;

    fn dataver(&self) -> u32 {
        self.dataver.get()
    }

    fn dataver_changed(&self) {
        self.dataver.changed();
    }

    async fn run(&self, ctx: impl HandlerContext) -> Result<(), Error> {
        self.follow(&ctx).await
    }

    fn status(&self, _ctx: impl ReadContext) -> Result<PowerSourceStatusEnum, Error> {
        let s = self.status.borrow();
        Ok(match Self::SOURCE {
            Source::Battery if s.battery_percent.is_some() => PowerSourceStatusEnum::Active,
            Source::Battery => PowerSourceStatusEnum::Unspecified,
            Source::UsbC if s.external_power => PowerSourceStatusEnum::Active,
            Source::UsbC => PowerSourceStatusEnum::Unavailable,
        })
    }

    fn order(&self, _ctx: impl ReadContext) -> Result<u8, Error> {
        // The battery runs the lock; USB-C is the emergency input.
        Ok(match Self::SOURCE {
            Source::Battery => 0,
            Source::UsbC => 1,
        })
    }

    fn description<P: TLVBuilderParent>(
        &self,
        _ctx: impl ReadContext,
        out: Utf8StrBuilder<P>,
    ) -> Result<P, Error> {
        out.set(match Self::SOURCE {
            Source::Battery => "Battery",
            Source::UsbC => "USB-C emergency power",
        })
    }

    fn wired_current_type(&self, _ctx: impl ReadContext) -> Result<WiredCurrentTypeEnum, Error> {
        match Self::SOURCE {
            Source::UsbC => Ok(WiredCurrentTypeEnum::DC),
            Source::Battery => Err(ErrorCode::AttributeNotFound.into()),
        }
    }

    fn wired_present(&self, _ctx: impl ReadContext) -> Result<bool, Error> {
        match Self::SOURCE {
            Source::UsbC => Ok(self.status.borrow().external_power),
            Source::Battery => Err(ErrorCode::AttributeNotFound.into()),
        }
    }

    fn bat_voltage(&self, _ctx: impl ReadContext) -> Result<Nullable<u32>, Error> {
        Ok(Nullable::new(self.status.borrow().battery_millivolts))
    }

    fn bat_percent_remaining(&self, _ctx: impl ReadContext) -> Result<Nullable<u8>, Error> {
        Ok(half_percent(self.percent()))
    }

    fn bat_charge_level(&self, _ctx: impl ReadContext) -> Result<BatChargeLevelEnum, Error> {
        let s = self.status.borrow();
        Ok(charge_level(s.battery_percent, s.low_battery))
    }

    fn bat_replacement_needed(&self, _ctx: impl ReadContext) -> Result<bool, Error> {
        Ok(self.status.borrow().low_battery)
    }

    fn bat_replaceability(&self, _ctx: impl ReadContext) -> Result<BatReplaceabilityEnum, Error> {
        Ok(BatReplaceabilityEnum::UserReplaceable)
    }

    fn bat_present(&self, _ctx: impl ReadContext) -> Result<bool, Error> {
        Ok(self.percent().is_some())
    }

    fn endpoint_list<P: TLVBuilderParent>(
        &self,
        _ctx: impl ReadContext,
        builder: ArrayAttributeRead<ToTLVArrayBuilder<P, EndptId>, ToTLVBuilder<P, EndptId>>,
    ) -> Result<P, Error> {
        match builder {
            ArrayAttributeRead::ReadAll(mut b) => {
                for e in &self.powers {
                    b = b.push(e)?;
                }
                b.end()
            }
            ArrayAttributeRead::ReadOne(i, b) => {
                let e = self
                    .powers
                    .get(i as usize)
                    .ok_or(ErrorCode::ConstraintError)?;
                b.set(e)
            }
            ArrayAttributeRead::ReadNone(b) => b.end(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn battery_readings_in_the_clusters_units() {
        assert_eq!(half_percent(Some(80)), Nullable::some(160));
        assert_eq!(half_percent(Some(150)), Nullable::some(200));
        assert!(half_percent(None).is_none());
        assert_eq!(charge_level(Some(50), false), BatChargeLevelEnum::OK);
        assert_eq!(charge_level(Some(15), true), BatChargeLevelEnum::Warning);
        assert_eq!(charge_level(Some(0), true), BatChargeLevelEnum::Critical);
    }
}
