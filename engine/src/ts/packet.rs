//! A borrowed view of one 188-byte transport stream packet; fields decode on demand.

pub const PACKET_SIZE: usize = 188;
pub const SYNC_BYTE: u8 = 0x47;

/// Program Clock Reference: 33-bit base at 90 kHz plus a 9-bit extension at 27 MHz.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pcr {
    pub base: u64,
    pub extension: u16,
}

impl Pcr {
    /// The PCR in 27 MHz ticks.
    pub fn to_27mhz(self) -> u64 {
        self.base * 300 + u64::from(self.extension)
    }
}

/// Why a 188-byte block is not a usable packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("packet starts with 0x{0:02x}, expected the sync byte 0x47")]
    NoSync(u8),
    #[error("adaptation field length {length} does not fit in the packet (at most 183)")]
    AdaptationFieldTooLong { length: usize },
}

/// One TS packet, borrowed from the input.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    buf: &'a [u8; PACKET_SIZE],
}

impl<'a> Packet<'a> {
    /// Wraps a 188-byte block, checking the sync byte and the adaptation field length.
    pub fn new(buf: &'a [u8; PACKET_SIZE]) -> Result<Self, PacketError> {
        if buf[0] != SYNC_BYTE {
            return Err(PacketError::NoSync(buf[0]));
        }
        let p = Packet { buf };
        if p.has_adaptation_field() {
            let length = usize::from(buf[4]);
            // 2.4.3.4: "the value of the adaptation_field_length shall be in the range 0 to 182"
            // when a payload follows, "183" when there is none.
            let max = if p.has_payload() { 182 } else { 183 };
            if length > max {
                return Err(PacketError::AdaptationFieldTooLong { length });
            }
        }
        Ok(p)
    }

    pub fn transport_error(&self) -> bool {
        self.buf[1] & 0x80 != 0
    }

    /// payload_unit_start_indicator: a PES packet or PSI section starts in this packet.
    pub fn payload_unit_start(&self) -> bool {
        self.buf[1] & 0x40 != 0
    }

    pub fn pid(&self) -> u16 {
        (u16::from(self.buf[1] & 0x1F) << 8) | u16::from(self.buf[2])
    }

    pub fn scrambled(&self) -> bool {
        self.buf[3] & 0xC0 != 0
    }

    pub fn has_adaptation_field(&self) -> bool {
        self.buf[3] & 0x20 != 0
    }

    pub fn has_payload(&self) -> bool {
        self.buf[3] & 0x10 != 0
    }

    pub fn continuity_counter(&self) -> u8 {
        self.buf[3] & 0x0F
    }

    fn adaptation_field(&self) -> Option<&'a [u8]> {
        if !self.has_adaptation_field() {
            return None;
        }
        let len = usize::from(self.buf[4]);
        Some(&self.buf[5..5 + len])
    }

    /// discontinuity_indicator of the adaptation field.
    pub fn discontinuity(&self) -> bool {
        self.adaptation_field().is_some_and(|af| !af.is_empty() && af[0] & 0x80 != 0)
    }

    /// random_access_indicator of the adaptation field.
    pub fn random_access(&self) -> bool {
        self.adaptation_field().is_some_and(|af| !af.is_empty() && af[0] & 0x40 != 0)
    }

    pub fn pcr(&self) -> Option<Pcr> {
        let af = self.adaptation_field()?;
        if af.len() < 7 || af[0] & 0x10 == 0 {
            return None;
        }
        let b = &af[1..7];
        let base = (u64::from(b[0]) << 25)
            | (u64::from(b[1]) << 17)
            | (u64::from(b[2]) << 9)
            | (u64::from(b[3]) << 1)
            | (u64::from(b[4]) >> 7);
        let extension = (u16::from(b[4] & 1) << 8) | u16::from(b[5]);
        Some(Pcr { base, extension })
    }

    /// The payload bytes (empty when the packet carries none).
    pub fn payload(&self) -> &'a [u8] {
        if !self.has_payload() {
            return &[];
        }
        let start = if self.has_adaptation_field() { 5 + usize::from(self.buf[4]) } else { 4 };
        &self.buf[start.min(PACKET_SIZE)..]
    }
}
