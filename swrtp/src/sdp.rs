//! SDP offer/answer for one audio stream (RFC 3264 over RFC 4566/8866),
//! pure functions over `sdp-types`: no I/O, no session state.
//!
//! Supported: PCMU/8000, PCMA/8000 and telephone-event/8000 (RFC 4733, the
//! offerer's payload type and fmtp are kept), `a=ptime`, direction attributes
//! at session or media level, `c=` at session or media level, `a=rtcp`.
//! Only the first audio m-line with a non-zero port is used; every other
//! m-line is rejected in the answer with port 0, as RFC 3264 §6 requires.

use std::net::{IpAddr, SocketAddr};

use sdp_types::{Attribute, Connection, Direction, Media, Origin, Session, Time};
use switchboard_proto::media::v1 as pb;

/// Payload type we use for telephone-event when we make the offer.
pub const DEFAULT_TELEPHONE_EVENT_PT: u8 = 101;
/// Packetization time when nobody says otherwise.
pub const DEFAULT_PTIME_MS: u32 = 20;

/// Why remote SDP was refused. Leaves as gRPC `INVALID_ARGUMENT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// Not SDP at all.
    #[error("SDP does not parse: {0}")]
    Garbage(String),
    /// No usable audio stream.
    #[error("SDP has no audio m-line (m=audio with a non-zero port)")]
    NoAudio,
    /// The audio m-line uses a transport we cannot speak.
    #[error("audio m-line uses transport {0:?}; swrtp speaks RTP/AVP only")]
    Transport(String),
    /// No codec in common.
    #[error("no common codec: remote offers [{offered}], swrtp supports PCMU/8000 and PCMA/8000")]
    NoCommonCodec {
        /// What the remote listed.
        offered: String,
    },
    /// No `c=` line applies to the audio m-line.
    #[error("SDP has no connection address (c=) for the audio m-line")]
    NoConnection,
    /// `c=` is not an IP address.
    #[error("SDP connection address {0:?} is not an IP address")]
    BadAddress(String),
}

/// Result type of this module.
pub type Result<T, E = SdpError> = std::result::Result<T, E>;

/// A G.711 codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioCodec {
    /// mu-law, static payload type 0.
    Pcmu,
    /// A-law, static payload type 8.
    Pcma,
}

impl AudioCodec {
    /// Static payload type (RFC 3551).
    pub fn static_pt(self) -> u8 {
        match self {
            AudioCodec::Pcmu => 0,
            AudioCodec::Pcma => 8,
        }
    }

    /// rtpmap encoding name.
    pub fn name(self) -> &'static str {
        match self {
            AudioCodec::Pcmu => "PCMU",
            AudioCodec::Pcma => "PCMA",
        }
    }

    /// The matching G.711 law.
    pub fn law(self) -> crate::g711::Law {
        match self {
            AudioCodec::Pcmu => crate::g711::Law::Ulaw,
            AudioCodec::Pcma => crate::g711::Law::Alaw,
        }
    }

    /// Proto enum value.
    pub fn to_proto(self) -> pb::Codec {
        match self {
            AudioCodec::Pcmu => pb::Codec::Pcmu,
            AudioCodec::Pcma => pb::Codec::Pcma,
        }
    }

    /// From the proto enum (UNSPECIFIED has no codec).
    pub fn from_proto(c: pb::Codec) -> Option<Self> {
        match c {
            pb::Codec::Pcmu => Some(AudioCodec::Pcmu),
            pb::Codec::Pcma => Some(AudioCodec::Pcma),
            pb::Codec::Unspecified => None,
        }
    }

    fn from_name(name: &str, rate: u32) -> Option<Self> {
        match (name.to_ascii_uppercase().as_str(), rate) {
            ("PCMU", 8000) => Some(AudioCodec::Pcmu),
            ("PCMA", 8000) => Some(AudioCodec::Pcma),
            _ => None,
        }
    }
}

/// Proto enum of an SDP direction.
pub fn direction_to_proto(d: Direction) -> pb::Direction {
    match d {
        Direction::SendRecv => pb::Direction::Sendrecv,
        Direction::SendOnly => pb::Direction::Sendonly,
        Direction::RecvOnly => pb::Direction::Recvonly,
        Direction::Inactive => pb::Direction::Inactive,
    }
}

/// SDP direction of a proto enum (UNSPECIFIED: sendrecv).
pub fn direction_from_proto(d: pb::Direction) -> Direction {
    match d {
        pb::Direction::Unspecified | pb::Direction::Sendrecv => Direction::SendRecv,
        pb::Direction::Sendonly => Direction::SendOnly,
        pb::Direction::Recvonly => Direction::RecvOnly,
        pb::Direction::Inactive => Direction::Inactive,
    }
}

/// One payload format of an m-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    /// RTP payload type.
    pub pt: u8,
    /// Encoding name as written (empty for an unknown dynamic type).
    pub name: String,
    /// Clock rate.
    pub rate: u32,
    /// `a=fmtp` parameters, verbatim.
    pub fmtp: Option<String>,
}

/// The parts of a remote description swrtp cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteDescription {
    /// `o=` session id.
    pub origin_id: String,
    /// `o=` session version.
    pub origin_version: u64,
    /// Every m-line as `(media, proto, fmt)`, for rejecting the unused ones.
    pub media_lines: Vec<(String, String, String)>,
    /// Index of the audio m-line in `media_lines`.
    pub audio_index: usize,
    /// Formats of the audio m-line, in the remote's preference order.
    pub formats: Vec<Format>,
    /// `a=ptime`, if given.
    pub ptime: Option<u32>,
    /// Direction from the remote's point of view.
    pub direction: Direction,
    /// Where the remote wants RTP; `None` for `0.0.0.0` (RFC 2543 hold).
    pub rtp: Option<SocketAddr>,
    /// Where the remote wants RTCP (`a=rtcp` or RTP port + 1).
    pub rtcp: Option<SocketAddr>,
    /// The `c=` address of the audio m-line as written (`0.0.0.0` too):
    /// its family is the family of the session answering it.
    pub connection: IpAddr,
}

impl RemoteDescription {
    fn list_formats(&self) -> String {
        self.formats
            .iter()
            .map(|f| {
                if f.name.is_empty() {
                    f.pt.to_string()
                } else {
                    format!("{}/{}", f.name, f.rate)
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn telephone_event(&self) -> Option<&Format> {
        self.formats
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case("telephone-event") && f.rate == 8000)
    }
}

fn direction_of(attrs: &[Attribute]) -> Option<Direction> {
    attrs.iter().rev().find_map(|a| match a.attribute.as_str() {
        "sendrecv" => Some(Direction::SendRecv),
        "sendonly" => Some(Direction::SendOnly),
        "recvonly" => Some(Direction::RecvOnly),
        "inactive" => Some(Direction::Inactive),
        _ => None,
    })
}

fn parse_ip(c: &Connection) -> Result<IpAddr> {
    let raw = c.connection_address.as_str();
    let ip = raw.split('/').next().unwrap_or(raw);
    ip.parse()
        .map_err(|_| SdpError::BadAddress(c.connection_address.clone()))
}

/// Parse remote SDP and pick its audio stream.
pub fn parse(text: &str) -> Result<RemoteDescription> {
    let session = Session::parse(text.as_bytes()).map_err(|e| SdpError::Garbage(e.to_string()))?;
    let media_lines: Vec<_> = session
        .medias
        .iter()
        .map(|m| (m.media.clone(), m.proto.clone(), m.fmt.clone()))
        .collect();
    let (audio_index, media) = session
        .medias
        .iter()
        .enumerate()
        .find(|(_, m)| m.media == "audio" && m.port != 0)
        .ok_or(SdpError::NoAudio)?;
    if !media.proto.eq_ignore_ascii_case("RTP/AVP") {
        return Err(SdpError::Transport(media.proto.clone()));
    }

    let mut formats = Vec::new();
    for token in media.fmt.split_whitespace() {
        let pt: u8 = match token.parse() {
            Ok(pt) if pt < 128 => pt,
            _ => {
                return Err(SdpError::Garbage(format!(
                    "payload type {token:?} in m=audio"
                )));
            }
        };
        let (name, rate) = match pt {
            0 => ("PCMU".to_string(), 8000),
            8 => ("PCMA".to_string(), 8000),
            _ => (String::new(), 0),
        };
        formats.push(Format {
            pt,
            name,
            rate,
            fmtp: None,
        });
    }
    for attr in &media.attributes {
        let Some(value) = attr.value.as_deref() else {
            continue;
        };
        match attr.attribute.as_str() {
            "rtpmap" => {
                let map: sdp_types::RtpMap = value
                    .parse()
                    .map_err(|_| SdpError::Garbage(format!("a=rtpmap:{value}")))?;
                if let Some(f) = formats.iter_mut().find(|f| f.pt == map.payload_type) {
                    f.name = map.encoding_name;
                    f.rate = map.clock_rate;
                }
            }
            "fmtp" => {
                if let Some((pt, params)) = value.split_once(' ')
                    && let Ok(pt) = pt.parse::<u8>()
                    && let Some(f) = formats.iter_mut().find(|f| f.pt == pt)
                {
                    f.fmtp = Some(params.trim().to_string());
                }
            }
            _ => {}
        }
    }
    let ptime = media
        .get_first_attribute_value("ptime")
        .flatten()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|p| (10..=120).contains(p));
    let direction = direction_of(&media.attributes)
        .or_else(|| direction_of(&session.attributes))
        .unwrap_or_default();
    let connection = media
        .connections
        .first()
        .or(session.connection.as_ref())
        .ok_or(SdpError::NoConnection)?;
    let ip = parse_ip(connection)?;
    let rtp = (!ip.is_unspecified()).then(|| SocketAddr::new(ip, media.port));
    let rtcp = match media.get_first_attribute_value("rtcp").flatten() {
        Some(v) => {
            let mut parts = v.split_whitespace();
            let port = parts.next().and_then(|p| p.parse::<u16>().ok());
            let addr = parts.nth(2).and_then(|a| a.parse::<IpAddr>().ok());
            port.map(|p| SocketAddr::new(addr.unwrap_or(ip), p))
        }
        None => media.port.checked_add(1).map(|p| SocketAddr::new(ip, p)),
    }
    .filter(|a| !a.ip().is_unspecified());
    Ok(RemoteDescription {
        origin_id: session.origin.sess_id.clone(),
        origin_version: session.origin.sess_version,
        media_lines,
        audio_index,
        formats,
        ptime,
        direction,
        rtp,
        rtcp,
        connection: ip,
    })
}

/// What offer/answer settled on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Audio codec.
    pub codec: AudioCodec,
    /// Its payload type.
    pub pt: u8,
    /// telephone-event payload type, if negotiated.
    pub te_pt: Option<u8>,
    /// Packetization time (ms).
    pub ptime: u32,
    /// Direction from our side.
    pub direction: Direction,
    /// Remote RTP address from the SDP.
    pub remote_rtp: Option<SocketAddr>,
    /// Remote RTCP address from the SDP.
    pub remote_rtcp: Option<SocketAddr>,
}

/// Our side of the description: stable across re-offers except `version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalOrigin {
    /// `o=` session id.
    pub sess_id: u64,
    /// `o=` version, bumped each time our description changes (RFC 3264 §8).
    pub version: u64,
    /// Address advertised in `o=` and `c=`.
    pub address: IpAddr,
    /// Our RTP port.
    pub port: u16,
}

struct AudioLine<'a> {
    formats: &'a [Format],
    ptime: u32,
    direction: Direction,
}

fn write_description(
    origin: &LocalOrigin,
    audio: &AudioLine<'_>,
    others: &[(String, String, String)],
    audio_index: usize,
) -> String {
    let mut o = Origin::with_ip_addr(origin.sess_id, origin.version, origin.address);
    o.set_username("swrtp");
    let mut session = Session::new(o, "swrtp");
    session.connection = Some(Connection::from_ip_addr(origin.address));
    session.times.push(Time::new(0, 0));
    let fmt = audio
        .formats
        .iter()
        .map(|f| f.pt.to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let mut m = Media::new(
        sdp_types::MediaType::Audio,
        origin.port,
        sdp_types::TransportProto::RtpAvp,
        fmt,
    );
    for f in audio.formats {
        m.attributes.push(Attribute::with_value(
            "rtpmap",
            format!("{} {}/{}", f.pt, f.name, f.rate),
        ));
        if let Some(p) = &f.fmtp {
            m.attributes
                .push(Attribute::with_value("fmtp", format!("{} {p}", f.pt)));
        }
    }
    m.attributes
        .push(Attribute::with_value("ptime", audio.ptime.to_string()));
    m.attributes.push(Attribute::new(audio.direction.as_str()));
    for (i, (media, proto, fmt)) in others.iter().enumerate() {
        if i == audio_index {
            session.medias.push(m.clone());
        } else {
            session.medias.push(Media {
                media: media.clone(),
                port: 0,
                num_ports: None,
                proto: proto.clone(),
                fmt: fmt.clone(),
                media_title: None,
                connections: Vec::new(),
                bandwidths: Vec::new(),
                key: None,
                attributes: Vec::new(),
            });
        }
    }
    if others.is_empty() {
        session.medias.push(m);
    }
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = session.write(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Answer a remote offer. `prefs` restricts which codecs we accept (empty:
/// both); the offerer's order decides among them (RFC 3264 §6.1).
pub fn answer(
    remote: &RemoteDescription,
    origin: &LocalOrigin,
    prefs: &[AudioCodec],
) -> Result<(String, Negotiated)> {
    let chosen = remote
        .formats
        .iter()
        .find_map(|f| {
            AudioCodec::from_name(&f.name, f.rate)
                .filter(|c| prefs.is_empty() || prefs.contains(c))
                .map(|c| (c, f))
        })
        .ok_or_else(|| SdpError::NoCommonCodec {
            offered: remote.list_formats(),
        })?;
    let te = remote.telephone_event();
    let mut formats = vec![Format {
        pt: chosen.1.pt,
        name: chosen.0.name().to_string(),
        rate: 8000,
        fmtp: None,
    }];
    if let Some(te) = te {
        formats.push(te.clone());
    }
    let ptime = remote.ptime.unwrap_or(DEFAULT_PTIME_MS);
    let direction = remote.direction.reverse();
    let sdp = write_description(
        origin,
        &AudioLine {
            formats: &formats,
            ptime,
            direction,
        },
        &remote.media_lines,
        remote.audio_index,
    );
    Ok((
        sdp,
        Negotiated {
            codec: chosen.0,
            pt: chosen.1.pt,
            te_pt: te.map(|f| f.pt),
            ptime,
            direction,
            remote_rtp: remote.rtp,
            remote_rtcp: remote.rtcp,
        },
    ))
}

/// What we put in an offer, kept to interpret the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// Codecs offered, in preference order.
    pub codecs: Vec<AudioCodec>,
    /// telephone-event payload type offered.
    pub te_pt: Option<u8>,
    /// ptime we asked for.
    pub ptime: u32,
}

/// Produce an offer (B-leg INVITE body).
pub fn offer(origin: &LocalOrigin, offer: &Offer) -> String {
    offer_with_direction(origin, offer, Direction::SendRecv)
}

/// Produce an offer with `direction` from our side (a re-offer that holds
/// or resumes, see [`crate::hold`]).
pub fn offer_with_direction(origin: &LocalOrigin, offer: &Offer, direction: Direction) -> String {
    let mut formats: Vec<Format> = offer
        .codecs
        .iter()
        .map(|c| Format {
            pt: c.static_pt(),
            name: c.name().to_string(),
            rate: 8000,
            fmtp: None,
        })
        .collect();
    if let Some(pt) = offer.te_pt {
        formats.push(Format {
            pt,
            name: "telephone-event".into(),
            rate: 8000,
            fmtp: Some("0-16".into()),
        });
    }
    write_description(
        origin,
        &AudioLine {
            formats: &formats,
            ptime: offer.ptime,
            direction,
        },
        &[],
        0,
    )
}

/// Apply the remote answer to our offer.
pub fn apply_answer(offer: &Offer, remote: &RemoteDescription) -> Result<Negotiated> {
    let chosen = remote
        .formats
        .iter()
        .find_map(|f| {
            AudioCodec::from_name(&f.name, f.rate)
                .filter(|c| offer.codecs.contains(c))
                .map(|c| (c, f.pt))
        })
        .ok_or_else(|| SdpError::NoCommonCodec {
            offered: remote.list_formats(),
        })?;
    let te_pt = offer
        .te_pt
        .and_then(|_| remote.telephone_event().map(|f| f.pt));
    Ok(Negotiated {
        codec: chosen.0,
        pt: chosen.1,
        te_pt,
        ptime: remote.ptime.unwrap_or(offer.ptime),
        direction: remote.direction.reverse(),
        remote_rtp: remote.rtp,
        remote_rtcp: remote.rtcp,
    })
}

#[cfg(test)]
mod tests;
