//! MCP3008: 8-channel, 10-bit SAR ADC on SPI (mode 0, ≤ 1.35 MHz at 2.7 V).
//!
//! The lock reads two analog signals through it: the motor current (a
//! shunt resistor and amplifier on one channel) for jam detection, and the
//! battery voltage (a resistor divider on another).
//!
//! One conversion is one 3-byte full-duplex transfer with chip select held:
//!
//! ```text
//! MOSI: 0000_0001  SGL D2 D1 D0 xxxx  xxxx_xxxx
//! MISO: xxxx_xxxx  xxxx x 0 B9 B8     B7 … B0
//! ```
//!
//! (start bit, then single-ended + channel; the 10-bit result straddles
//! the last two bytes). The driver owns an `SpiDevice`, so chip select and
//! bus sharing belong to the HAL.
use embedded_hal::spi::SpiDevice;

/// Full-scale count of a 10-bit conversion.
pub const FULL_SCALE: u16 = 1023;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Mcp3008Error<E> {
    #[error("ADC channel {0} does not exist (MCP3008 has channels 0-7)")]
    NoSuchChannel(u8),
    #[error("SPI transfer to the MCP3008 failed: {0:?}")]
    Spi(E),
}

pub struct Mcp3008<SPI> {
    spi: SPI,
}

impl<SPI> std::fmt::Debug for Mcp3008<SPI> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mcp3008").finish_non_exhaustive()
    }
}

impl<SPI: SpiDevice> Mcp3008<SPI> {
    pub fn new(spi: SPI) -> Self {
        Mcp3008 { spi }
    }

    /// One single-ended conversion of `channel` (0–7): 0..=1023.
    pub fn read(&mut self, channel: u8) -> Result<u16, Mcp3008Error<SPI::Error>> {
        if channel > 7 {
            return Err(Mcp3008Error::NoSuchChannel(channel));
        }
        let mut buf = [0x01, 0x80 | (channel << 4), 0x00];
        self.spi
            .transfer_in_place(&mut buf)
            .map_err(Mcp3008Error::Spi)?;
        Ok((u16::from(buf[1] & 0x03) << 8) | u16::from(buf[2]))
    }

    /// Give the bus device back (tests call `done()` on a mock).
    pub fn release(self) -> SPI {
        self.spi
    }
}

/// Converts a raw count to millivolts at the ADC pin for a reference of
/// `vref_mv`.
pub fn count_to_millivolts(count: u16, vref_mv: u32) -> u32 {
    u32::from(count.min(FULL_SCALE)) * vref_mv / u32::from(FULL_SCALE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal_mock::eh1::spi::{Mock, Transaction};

    #[test]
    fn reads_channel_with_start_bit_and_single_ended_mode() {
        let expect = [
            Transaction::transaction_start(),
            Transaction::transfer_in_place(vec![0x01, 0xA0, 0x00], vec![0xFF, 0xFE, 0x34]),
            Transaction::transaction_end(),
        ];
        let mut adc = Mcp3008::new(Mock::new(&expect));
        // channel 2 → 0x80 | 0x20; result = (0b10 << 8) | 0x34, upper MISO bits ignored.
        assert_eq!(adc.read(2).unwrap(), 0x234);
        adc.release().done();
    }

    #[test]
    fn refuses_channels_past_seven_without_touching_the_bus() {
        let mut adc = Mcp3008::new(Mock::new(&[]));
        assert_eq!(adc.read(8), Err(Mcp3008Error::NoSuchChannel(8)));
        adc.release().done();
    }

    #[test]
    fn counts_scale_to_millivolts() {
        assert_eq!(count_to_millivolts(0, 3300), 0);
        assert_eq!(count_to_millivolts(1023, 3300), 3300);
        assert_eq!(count_to_millivolts(2000, 3300), 3300);
    }
}
