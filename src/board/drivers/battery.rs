//! Battery gauge: pack voltage → state of charge, and emergency power.
//!
//! The pack voltage reaches the ADC through a resistor divider
//! (`divider` = pack volts per ADC-pin volt, e.g. 4.0 for 100k/33k on a
//! 4×AA or 2S Li-ion pack). Charge is read off a discharge curve given in
//! the board file as (millivolts, percent) points, interpolated linearly:
//! chemistries differ too much for one built-in formula. External power
//! (the USB-C emergency port, B-10.3) is a separate GPIO input.
use serde::Deserialize;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CurveError {
    #[error("battery curve needs at least two points, got {0}")]
    TooFewPoints(usize),
    #[error("battery curve must rise strictly in millivolts and not fall in percent (point {0})")]
    NotMonotonic(usize),
    #[error("battery curve percent {0} is above 100")]
    PercentOutOfRange(u8),
}

/// A validated discharge curve: strictly increasing in millivolts,
/// non-decreasing in percent.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Vec<(u32, u8)>")]
pub struct DischargeCurve {
    points: Vec<(u32, u8)>,
}

impl TryFrom<Vec<(u32, u8)>> for DischargeCurve {
    type Error = CurveError;

    fn try_from(points: Vec<(u32, u8)>) -> Result<Self, CurveError> {
        if points.len() < 2 {
            return Err(CurveError::TooFewPoints(points.len()));
        }
        for (i, w) in points.windows(2).enumerate() {
            if w[1].0 <= w[0].0 || w[1].1 < w[0].1 {
                return Err(CurveError::NotMonotonic(i + 1));
            }
        }
        if let Some(&(_, p)) = points.iter().find(|(_, p)| *p > 100) {
            return Err(CurveError::PercentOutOfRange(p));
        }
        Ok(DischargeCurve { points })
    }
}

impl DischargeCurve {
    /// A typical curve for a 2-cell Li-ion pack (7.4 V nominal).
    pub fn li_ion_2s() -> Self {
        DischargeCurve {
            points: vec![
                (6000, 0),
                (6800, 5),
                (7200, 20),
                (7400, 40),
                (7700, 60),
                (8000, 80),
                (8400, 100),
            ],
        }
    }

    /// State of charge for a pack voltage, clamped to the curve's ends.
    pub fn percent(&self, millivolts: u32) -> u8 {
        let first = self.points[0];
        let last = self.points[self.points.len() - 1];
        if millivolts <= first.0 {
            return first.1;
        }
        if millivolts >= last.0 {
            return last.1;
        }
        for w in self.points.windows(2) {
            let ((v0, p0), (v1, p1)) = (w[0], w[1]);
            if millivolts <= v1 {
                let span = u64::from(v1 - v0);
                let rise = u64::from(p1 - p0) * u64::from(millivolts - v0);
                return p0 + (rise / span) as u8;
            }
        }
        last.1
    }
}

/// Pack millivolts from the ADC pin voltage and the divider ratio.
pub fn pack_millivolts(pin_mv: u32, divider: f32) -> u32 {
    (pin_mv as f32 * divider).round() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_and_clamps() {
        let c = DischargeCurve::li_ion_2s();
        assert_eq!(c.percent(5000), 0);
        assert_eq!(c.percent(9000), 100);
        assert_eq!(c.percent(7200), 20);
        assert_eq!(c.percent(7300), 30);
    }

    #[test]
    fn rejects_bad_curves() {
        assert_eq!(
            DischargeCurve::try_from(vec![(1, 1)]),
            Err(CurveError::TooFewPoints(1))
        );
        assert_eq!(
            DischargeCurve::try_from(vec![(7000, 10), (6000, 20)]),
            Err(CurveError::NotMonotonic(1))
        );
        assert_eq!(
            DischargeCurve::try_from(vec![(6000, 10), (7000, 120)]),
            Err(CurveError::PercentOutOfRange(120))
        );
    }

    #[test]
    fn divider_scales_pin_voltage() {
        assert_eq!(pack_millivolts(1850, 4.0), 7400);
    }
}
