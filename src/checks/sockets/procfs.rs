//! The kernel's TCP tables (`/proc/net/tcp`, `/proc/net/tcp6`) and TCP counters
//! (`/proc/net/netstat`), read into the few numbers the `sockets` check judges.
//!
//! A busy gateway pod holds tens of thousands of sockets (100k behind a load balancer is not
//! rare), so a table is read one line at a time into counts whose size the configuration fixes
//! (per watched remote port and state, per listening port) and nothing per socket is kept.
//! Addresses are decoded only so that a malformed line is recognised as one; they never leave
//! a line's parse: a remote address in a metric label would make one series per client.
//!
//! What reaches these parsers is whatever a capped read returned, so a line that does not parse
//! is skipped and counted, never a panic, and a table cut by the cap is said to be cut rather
//! than mistaken for a short one.

use std::io::{self, BufRead};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A line longer than this is not one the kernel wrote (a tcp6 line is about 170 bytes); it is
/// skipped without being kept, so one hostile line cannot grow a buffer.
pub(crate) const MAX_LINE_BYTES: usize = 512;

/// Lines read from one table before the rest is left unread: beyond 100k sockets with room to
/// spare, and a bound on the time one run spends (a line costs well under a microsecond).
pub(crate) const MAX_LINES: u64 = 262_144;

/// A TCP state as the kernel numbers it (`include/net/tcp_states.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    NewSynRecv,
}

/// How many [`TcpState`]s there are: the size of every per-state count.
const STATES: usize = 12;

impl TcpState {
    /// Every state, in the kernel's order.
    pub(crate) const ALL: [TcpState; STATES] = [
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::Closing,
        TcpState::NewSynRecv,
    ];

    /// The `st` column's code. 13 (`TCP_BOUND_INACTIVE`) and anything else are not states a
    /// socket in these tables can have.
    pub(crate) fn from_code(code: u8) -> Option<TcpState> {
        match code {
            1..=12 => TcpState::ALL.get(usize::from(code) - 1).copied(),
            _ => None,
        }
    }

    /// The metric label value (`state="close_wait"`): lower case, as the SPEC lists them.
    pub(crate) fn label(self) -> &'static str {
        match self {
            TcpState::Established => "established",
            TcpState::SynSent => "syn_sent",
            TcpState::SynRecv => "syn_recv",
            TcpState::FinWait1 => "fin_wait1",
            TcpState::FinWait2 => "fin_wait2",
            TcpState::TimeWait => "time_wait",
            TcpState::Close => "close",
            TcpState::CloseWait => "close_wait",
            TcpState::LastAck => "last_ack",
            TcpState::Listen => "listen",
            TcpState::Closing => "closing",
            TcpState::NewSynRecv => "new_syn_recv",
        }
    }

    /// The name `netstat -an` and `ss` print, for reasons a person compares with the runbook's
    /// `netstat -an | grep :5432`.
    pub(crate) fn netstat_name(self) -> &'static str {
        match self {
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait1 => "FIN_WAIT1",
            TcpState::FinWait2 => "FIN_WAIT2",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::Closing => "CLOSING",
            TcpState::NewSynRecv => "NEW_SYN_RECV",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why a line was skipped. Carries nothing from the line but a state code, so it can be shown
/// without showing an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Malformed {
    #[error("a line longer than {MAX_LINE_BYTES} bytes")]
    TooLong,
    #[error("a line with too few fields")]
    Fields,
    #[error("a line without its slot number")]
    Slot,
    #[error("an address that is not 8 or 32 hex digits")]
    Address,
    #[error("a port that is not 4 hex digits")]
    Port,
    #[error("a state that is not 2 hex digits")]
    StateField,
    #[error("an unknown state code {0:#04x}")]
    UnknownState(u8),
    #[error("queues that are not two 8-hex-digit numbers")]
    Queues,
}

/// One line of a TCP table, decoded. Lives only while its line is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Socket {
    /// IPv4-mapped IPv6 addresses (a dual-stack listener's IPv4 peers, listed in tcp6) are given
    /// as the IPv4 address they are.
    pub(crate) local: SocketAddr,
    pub(crate) remote: SocketAddr,
    pub(crate) state: TcpState,
    /// Bytes sent and not yet acknowledged.
    pub(crate) tx_queue: u32,
    /// For a LISTEN socket, the accept queue: connections the kernel completed that the
    /// application has not accepted yet. Otherwise bytes received and not yet read.
    pub(crate) rx_queue: u32,
}

/// Decodes one line of `/proc/net/tcp` or `/proc/net/tcp6` (the kernel's
/// `"%4d: %08X:%04X %08X:%04X %02X %08X:%08X ..."`); the columns after the queues are not read.
pub(crate) fn parse_line(line: &[u8]) -> Result<Socket, Malformed> {
    if line.len() > MAX_LINE_BYTES {
        return Err(Malformed::TooLong);
    }
    let mut fields = line.split(|b| b.is_ascii_whitespace()).filter(|f| !f.is_empty());
    let (Some(slot), Some(local), Some(remote), Some(state), Some(queues)) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(Malformed::Fields);
    };
    match slot.split_last() {
        Some((b':', digits)) if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) => {}
        _ => return Err(Malformed::Slot),
    }
    let local = endpoint(local)?;
    let remote = endpoint(remote)?;
    let code = if state.len() == 2 {
        hex(state).ok_or(Malformed::StateField)?
    } else {
        return Err(Malformed::StateField);
    };
    let state = u8::try_from(code)
        .ok()
        .and_then(TcpState::from_code)
        .ok_or(Malformed::UnknownState(u8::try_from(code).unwrap_or(u8::MAX)))?;
    let (tx, rx) = split_once(queues, b':').ok_or(Malformed::Queues)?;
    let queue = |field: &[u8]| {
        (field.len() == 8)
            .then(|| hex(field))
            .flatten()
            .and_then(|v| u32::try_from(v).ok())
            .ok_or(Malformed::Queues)
    };
    Ok(Socket {
        local,
        remote,
        state,
        tx_queue: queue(tx)?,
        rx_queue: queue(rx)?,
    })
}

/// `0100007F:1F90` (IPv4) or `00000000000000000000000001000000:1F90` (IPv6).
///
/// The kernel prints an address as the 32-bit words it holds in memory, each with `%08X`: the
/// bytes, which are in network order, read as a native-endian integer. Writing each word back
/// with the native byte order gives the bytes again (on x86 and arm64, little-endian, `0100007F`
/// is 127.0.0.1). The port is printed after `ntohs`, a plain number.
fn endpoint(field: &[u8]) -> Result<SocketAddr, Malformed> {
    let (address, port) = split_once(field, b':').ok_or(Malformed::Address)?;
    let port = if port.len() == 4 {
        hex(port).and_then(|p| u16::try_from(p).ok()).ok_or(Malformed::Port)?
    } else {
        return Err(Malformed::Port);
    };
    let ip = match address.len() {
        8 => {
            let word = hex(address)
                .and_then(|w| u32::try_from(w).ok())
                .ok_or(Malformed::Address)?;
            IpAddr::V4(Ipv4Addr::from(word.to_ne_bytes()))
        }
        32 => {
            let mut bytes = [0u8; 16];
            for (chunk, out) in address.chunks_exact(8).zip(bytes.chunks_exact_mut(4)) {
                let word = hex(chunk)
                    .and_then(|w| u32::try_from(w).ok())
                    .ok_or(Malformed::Address)?;
                out.copy_from_slice(&word.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes)).to_canonical()
        }
        _ => return Err(Malformed::Address),
    };
    Ok(SocketAddr::new(ip, port))
}

/// Up to 16 hex digits (either case) as a number; `None` for anything else, never a panic.
fn hex(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        let value = char::from(d).to_digit(16)?;
        Some((acc << 4) | u64::from(value))
    })
}

fn split_once(field: &[u8], at: u8) -> Option<(&[u8], &[u8])> {
    let position = field.iter().rposition(|&b| b == at)?;
    Some((&field[..position], &field[position + 1..]))
}

/// Connections in each state, for one watched remote port or for the whole namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ByState([u64; STATES]);

impl ByState {
    pub(crate) fn get(&self, state: TcpState) -> u64 {
        self.0[state.index()]
    }

    /// Every state with its count, zeros included, in the kernel's order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (TcpState, u64)> + '_ {
        TcpState::ALL.iter().map(|&state| (state, self.get(state)))
    }

    pub(crate) fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    fn add(&mut self, state: TcpState) {
        let count = &mut self.0[state.index()];
        *count = count.saturating_add(1);
    }
}

/// The sockets listening on one watched port (IPv4 and IPv6 listeners, and several with
/// `SO_REUSEPORT`, are summed: the gateway's port either way).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Listening {
    /// LISTEN sockets on the port; 0 means nothing listens there.
    pub(crate) listeners: u32,
    /// Connections waiting in their accept queues.
    pub(crate) accept_queue: u64,
}

/// What the tables held, counted for the configured ports: the only state a read keeps, its
/// size fixed by the configuration whatever the number of sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tally {
    /// Sorted, without duplicates; `by_port[i]` counts connections to `ports[i]`.
    ports: Vec<u16>,
    by_port: Vec<ByState>,
    /// Sorted, without duplicates; `listening[i]` is `listen_ports[i]`'s.
    listen_ports: Vec<u16>,
    listening: Vec<Listening>,
    /// Every socket of the namespace by state (netstat's summary), whatever its port.
    all: ByState,
    malformed: u64,
    first_malformed: Option<Malformed>,
    truncated: bool,
}

impl Tally {
    /// Counts connections whose remote port is one of `ports`, and the listeners on
    /// `listen_ports`.
    pub(crate) fn new(ports: &[u16], listen_ports: &[u16]) -> Tally {
        let sorted = |ports: &[u16]| {
            let mut ports = ports.to_vec();
            ports.sort_unstable();
            ports.dedup();
            ports
        };
        let ports = sorted(ports);
        let listen_ports = sorted(listen_ports);
        Tally {
            by_port: vec![ByState::default(); ports.len()],
            listening: vec![Listening::default(); listen_ports.len()],
            ports,
            listen_ports,
            all: ByState::default(),
            malformed: 0,
            first_malformed: None,
            truncated: false,
        }
    }

    /// Reads one table (`/proc/net/tcp` or `/proc/net/tcp6`, header line included) line by
    /// line; call once per table. Only an I/O error of `reader` is an error: malformed lines
    /// are counted, a table longer than [`MAX_LINES`] or cut inside a line (a capped read) is
    /// marked [`Tally::truncated`].
    pub(crate) fn read_table(&mut self, reader: impl BufRead) -> io::Result<()> {
        self.read_table_at_most(reader, MAX_LINES)
    }

    fn read_table_at_most(&mut self, mut reader: impl BufRead, max_lines: u64) -> io::Result<()> {
        let mut line: Vec<u8> = Vec::with_capacity(256);
        let mut too_long = false;
        let mut lines = 0u64;
        loop {
            let (consumed, ended) = {
                let chunk = match reader.fill_buf() {
                    Ok(chunk) => chunk,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                if chunk.is_empty() {
                    // The kernel ends every line with a newline: bytes after the last one are
                    // a line the cap cut, not a line to count.
                    if !line.is_empty() || too_long {
                        self.truncated = true;
                    }
                    return Ok(());
                }
                let newline = chunk.iter().position(|&b| b == b'\n');
                let piece = &chunk[..newline.unwrap_or(chunk.len())];
                if !too_long {
                    if line.len() + piece.len() > MAX_LINE_BYTES {
                        too_long = true;
                        line.clear();
                    } else {
                        line.extend_from_slice(piece);
                    }
                }
                (newline.map_or(chunk.len(), |n| n + 1), newline.is_some())
            };
            reader.consume(consumed);
            if !ended {
                continue;
            }
            if lines >= max_lines {
                self.truncated = true;
                return Ok(());
            }
            lines += 1;
            if too_long {
                self.skip(Malformed::TooLong);
            } else {
                self.add_line(&line);
            }
            line.clear();
            too_long = false;
        }
    }

    /// Counts one line (without its newline); the header and blank lines are passed over.
    fn add_line(&mut self, line: &[u8]) {
        let mut words = line.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty());
        match words.next() {
            None => return,
            Some(first) if first == b"sl" => return,
            Some(_) => {}
        }
        match parse_line(line) {
            Ok(socket) => self.add(&socket),
            Err(why) => self.skip(why),
        }
    }

    fn add(&mut self, socket: &Socket) {
        self.all.add(socket.state);
        if socket.state == TcpState::Listen {
            if let Ok(i) = self.listen_ports.binary_search(&socket.local.port()) {
                let listening = &mut self.listening[i];
                listening.listeners = listening.listeners.saturating_add(1);
                listening.accept_queue = listening.accept_queue.saturating_add(u64::from(socket.rx_queue));
            }
            // A listener is not a connection, whatever port it is on.
            return;
        }
        if let Ok(i) = self.ports.binary_search(&socket.remote.port()) {
            self.by_port[i].add(socket.state);
        }
    }

    fn skip(&mut self, why: Malformed) {
        self.malformed = self.malformed.saturating_add(1);
        self.first_malformed.get_or_insert(why);
    }

    /// Connections to `port` by state; `None` when the port is not watched.
    #[cfg(test)]
    pub(crate) fn connections(&self, port: u16) -> Option<&ByState> {
        let i = self.ports.binary_search(&port).ok()?;
        self.by_port.get(i)
    }

    /// Every watched port with its connections by state, in port order.
    pub(crate) fn watched(&self) -> impl Iterator<Item = (u16, &ByState)> + '_ {
        self.ports.iter().copied().zip(self.by_port.iter())
    }

    /// The listeners on `port`; `None` when the port is not watched.
    #[cfg(test)]
    pub(crate) fn listening(&self, port: u16) -> Option<Listening> {
        let i = self.listen_ports.binary_search(&port).ok()?;
        self.listening.get(i).copied()
    }

    /// Every watched listening port with its listeners, in port order.
    pub(crate) fn listeners(&self) -> impl Iterator<Item = (u16, Listening)> + '_ {
        self.listen_ports.iter().copied().zip(self.listening.iter().copied())
    }

    /// Every socket read, by state.
    pub(crate) fn all(&self) -> &ByState {
        &self.all
    }

    /// Lines skipped because they did not parse.
    pub(crate) fn malformed(&self) -> u64 {
        self.malformed
    }

    /// Why the first skipped line was skipped.
    pub(crate) fn first_malformed(&self) -> Option<Malformed> {
        self.first_malformed
    }

    /// A table was longer than [`MAX_LINES`] or cut inside a line: the counts are a lower bound.
    pub(crate) fn truncated(&self) -> bool {
        self.truncated
    }
}

/// The namespace's listen queue counters from `/proc/net/netstat`'s `TcpExt` lines; a counter
/// this kernel does not list is `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ListenCounters {
    /// `ListenOverflows`: connections dropped because an accept queue was full.
    pub(crate) overflows: Option<u64>,
    /// `ListenDrops`: every connection dropped at a listener, overflows included.
    pub(crate) drops: Option<u64>,
}

/// Why `/proc/net/netstat` gave no `TcpExt` counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NetstatError {
    #[error("/proc/net/netstat has no TcpExt lines: listen overflows cannot be counted")]
    NoTcpExt,
    #[error(
        "/proc/net/netstat's TcpExt names {names} counters but its values line has {values}: the read was cut or the file is not the kernel's"
    )]
    Mismatch { names: usize, values: usize },
    #[error("/proc/net/netstat's TcpExt values line is missing or cut")]
    NoValues,
}

/// Reads the `TcpExt` pair of lines (a line of names, then a line of values, both starting
/// `TcpExt:`) of `/proc/net/netstat`. The values are matched to names by position, so a pair
/// whose lengths differ, or a values line without its newline (cut by the read's cap, its last
/// number perhaps cut too), gives an error rather than a wrong counter.
pub(crate) fn listen_counters(text: &[u8]) -> Result<ListenCounters, NetstatError> {
    const PREFIX: &[u8] = b"TcpExt:";
    let mut lines = text.split_inclusive(|&b| b == b'\n');
    let names = lines.find(|l| l.starts_with(PREFIX)).ok_or(NetstatError::NoTcpExt)?;
    let values = lines.next().filter(|l| l.starts_with(PREFIX) && l.ends_with(b"\n"));
    let values = values.ok_or(NetstatError::NoValues)?;
    fn words(line: &[u8]) -> Vec<&[u8]> {
        line.get(PREFIX.len()..)
            .unwrap_or_default()
            .split(|b| b.is_ascii_whitespace())
            .filter(|w| !w.is_empty())
            .collect()
    }
    let (names, values) = (words(names), words(values));
    if names.len() != values.len() {
        return Err(NetstatError::Mismatch {
            names: names.len(),
            values: values.len(),
        });
    }
    let counter = |wanted: &[u8]| {
        let i = names.iter().position(|name| *name == wanted)?;
        std::str::from_utf8(values.get(i)?).ok()?.parse::<u64>().ok()
    };
    Ok(ListenCounters {
        overflows: counter(b"ListenOverflows"),
        drops: counter(b"ListenDrops"),
    })
}

#[cfg(test)]
mod tests {
    use std::io::BufReader;

    use super::*;

    /// `/proc/net/tcp` on the development machine (kernel 6.18), captured while a test script
    /// held: a listener on 127.0.0.1:53401 (0xD099) with one connection not yet accepted that
    /// had sent 5 bytes, two accepted connections (one whose server end closed: CLOSE_WAIT on
    /// the client, FIN_WAIT2 on the server), one closed by the client (TIME_WAIT), the IPv4
    /// client of a dual-stack listener (port 38381, 0x95ED), and sshd-like 0.0.0.0:2024.
    /// Trailing blanks as the kernel pads them.
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode                                                     
   0: 0100007F:D099 00000000:0000 0A 00000000:00000001 00:00000000 00000000     0        0 70823 2 0000000010373b7d 100 0 0 10 0                     
   1: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1175 1 0000000039c46d84 100 0 0 10 0                      
   2: 0100007F:E970 0100007F:D099 01 00000000:00000000 00:00000000 00000000     0        0 70824 2 000000001cb57034 20 0 0 10 -1                     
   3: 0100007F:E976 0100007F:D099 08 00000000:00000001 00:00000000 00000000     0        0 70826 2 0000000018f7e3cc 20 4 0 10 -1                     
   4: 0100007F:E982 0100007F:D099 06 00000000:00000000 03:00001751 00000000     0        0 0 3 00000000bec6af3f                                      
   5: 0100007F:E988 0100007F:D099 01 00000000:00000000 00:00000000 00000000     0        0 70830 1 00000000d6e2b78c 20 0 0 11 -1                     
   6: 0100007F:D099 0100007F:E976 05 00000000:00000000 03:00001752 00000000     0        0 0 3 00000000574e8b57                                      
   7: 0100007F:DACA 0100007F:95ED 01 00000000:00000000 00:00000000 00000000     0        0 70835 2 000000009f800f41 20 0 0 10 -1                     
   8: 0100007F:D099 0100007F:E970 01 00000000:00000000 00:00000000 00000000     0        0 70825 1 00000000aae335eb 20 0 0 10 -1                     
   9: 0100007F:D099 0100007F:E988 01 00000000:00000005 00:00000000 00000000     0        0 0 1 000000009685ba0c 20 4 30 10 -1                        
";

    /// `/proc/net/tcp6` from the same moment: a dual-stack listener on [::]:38381 (its IPv4
    /// client's accepted end is IPv4-mapped), a listener on [::1]:36473 and one connection to it.
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:95ED 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 70834 1 00000000dd4a4226 100 0 0 10 0
   1: 00000000000000000000000001000000:8E79 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 70831 1 00000000d2f799e1 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:95ED 0000000000000000FFFF00000100007F:DACA 01 00000000:00000000 00:00000000 00000000     0        0 70836 1 00000000821cad8d 20 0 0 10 -1
   3: 00000000000000000000000001000000:E200 00000000000000000000000001000000:8E79 01 00000000:00000000 00:00000000 00000000     0        0 70832 2 00000000f71b4547 20 0 0 10 -1
   4: 00000000000000000000000001000000:8E79 00000000000000000000000001000000:E200 01 00000000:00000000 00:00000000 00000000     0        0 70833 1 000000005fe3585f 20 0 0 10 -1
";

    /// A connection to 10.203.0.3:5432 whose SYN a network namespace dropped, 3 s in (two
    /// retransmissions, one unacknowledged byte: the SYN), captured on the same machine.
    const SYN_SENT: &str = "   0: 0200CB0A:A8CC 0300CB0A:1538 02 00000001:00000000 01:00000004 00000002     0        0 70419 2 00000000c9a6a517 100 0 0 1 -1                     \n";

    /// `/proc/net/netstat` from the same machine, whole.
    const NETSTAT: &str = "TcpExt: SyncookiesSent SyncookiesRecv SyncookiesFailed EmbryonicRsts PruneCalled RcvPruned OfoPruned OutOfWindowIcmps LockDroppedIcmps ArpFilter TW TWRecycled TWKilled PAWSActive PAWSEstab BeyondWindow TSEcrRejected PAWSOldAck PAWSTimewait DelayedACKs DelayedACKLocked DelayedACKLost ListenOverflows ListenDrops TCPHPHits TCPPureAcks TCPHPAcks TCPRenoRecovery TCPSackRecovery TCPSACKReneging TCPSACKReorder TCPRenoReorder TCPTSReorder TCPFullUndo TCPPartialUndo TCPDSACKUndo TCPLossUndo TCPLostRetransmit TCPRenoFailures TCPSackFailures TCPLossFailures TCPFastRetrans TCPSlowStartRetrans TCPTimeouts TCPLossProbes TCPLossProbeRecovery TCPRenoRecoveryFail TCPSackRecoveryFail TCPRcvCollapsed TCPDSACKOldSent TCPDSACKOfoSent TCPDSACKRecv TCPDSACKOfoRecv TCPAbortOnData TCPAbortOnClose TCPAbortOnMemory TCPAbortOnTimeout TCPAbortOnLinger TCPAbortFailed TCPMemoryPressures TCPMemoryPressuresChrono TCPSACKDiscard TCPDSACKIgnoredOld TCPDSACKIgnoredNoUndo TCPSpuriousRTOs TCPMD5NotFound TCPMD5Unexpected TCPMD5Failure TCPSackShifted TCPSackMerged TCPSackShiftFallback TCPBacklogCoalesce TCPBacklogDrop PFMemallocDrop TCPMinTTLDrop TCPDeferAcceptDrop IPReversePathFilter TCPTimeWaitOverflow TCPReqQFullDoCookies TCPReqQFullDrop TCPRetransFail TCPRcvCoalesce TCPOFOQueue TCPOFODrop TCPOFOMerge TCPChallengeACK TCPSYNChallenge TCPFastOpenActive TCPFastOpenActiveFail TCPFastOpenPassive TCPFastOpenPassiveFail TCPFastOpenListenOverflow TCPFastOpenCookieReqd TCPFastOpenBlackhole TCPSpuriousRtxHostQueues BusyPollRxPackets TCPAutoCorking TCPFromZeroWindowAdv TCPToZeroWindowAdv TCPWantZeroWindowAdv TCPSynRetrans TCPOrigDataSent TCPHystartTrainDetect TCPHystartTrainCwnd TCPHystartDelayDetect TCPHystartDelayCwnd TCPACKSkippedSynRecv TCPACKSkippedPAWS TCPACKSkippedSeq TCPACKSkippedFinWait2 TCPACKSkippedTimeWait TCPACKSkippedChallenge TCPWinProbe TCPKeepAlive TCPMTUPFail TCPMTUPSuccess TCPDelivered TCPDeliveredCE TCPAckCompressed TCPZeroWindowDrop TCPRcvQDrop TCPWqueueTooBig TCPFastOpenPassiveAltKey TcpTimeoutRehash TcpDuplicateDataRehash TCPDSACKRecvSegs TCPDSACKIgnoredDubious TCPMigrateReqSuccess TCPMigrateReqFailure TCPPLBRehash TCPAORequired TCPAOBad TCPAOKeyNotFound TCPAOGood TCPAODroppedIcmps
TcpExt: 139 219 0 0 0 0 0 0 0 0 16247 0 0 0 0 0 0 0 0 214 0 12 761 761 1020 46247 16875 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 3 1 0 0 0 0 211 12 0 1 0 383 21 0 0 0 0 0 0 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 139 0 0 5141 0 0 0 0 0 0 0 0 0 0 0 0 2 0 183 138 138 27 1 59861 0 0 0 0 0 0 0 0 0 0 0 0 0 0 71853 0 0 0 0 0 0 3 0 1 0 0 0 0 0 0 0 0 0
IpExt: InNoRoutes InTruncatedPkts InMcastPkts OutMcastPkts InBcastPkts OutBcastPkts InOctets OutOctets InMcastOctets OutMcastOctets InBcastOctets OutBcastOctets InCsumErrors InNoECTPkts InECT1Pkts InECT0Pkts InCEPkts ReasmOverlaps
IpExt: 0 0 0 0 0 0 188528682 35459387 0 0 0 0 0 152952 0 0 0 0
MPTcpExt: MPCapableSYNRX MPCapableSYNTX MPCapableSYNACKRX MPCapableACKRX
MPTcpExt: 0 0 0 0
";

    fn tally(ports: &[u16], listen: &[u16], tables: &[&str]) -> Tally {
        let mut tally = Tally::new(ports, listen);
        for table in tables {
            tally.read_table(table.as_bytes()).unwrap();
        }
        tally
    }

    #[test]
    fn every_state_code_has_one_state_and_others_none() {
        for (i, state) in TcpState::ALL.iter().enumerate() {
            assert_eq!(TcpState::from_code(i as u8 + 1), Some(*state));
            assert_eq!(state.netstat_name().to_ascii_lowercase(), state.label());
        }
        assert_eq!(TcpState::from_code(0x0C), Some(TcpState::NewSynRecv));
        assert_eq!(TcpState::from_code(0x0A), Some(TcpState::Listen));
        assert_eq!(TcpState::from_code(0), None);
        assert_eq!(TcpState::from_code(13), None);
        assert_eq!(TcpState::from_code(0xFF), None);
    }

    #[test]
    fn the_captured_ipv4_table_counts_by_remote_port_and_state() {
        let t = tally(&[53401, 5432], &[53401, 2024, 8080], &[TCP]);
        assert_eq!(t.malformed(), 0);
        assert!(!t.truncated());
        let to_listener = t.connections(53401).unwrap();
        assert_eq!(
            to_listener.get(TcpState::Established),
            2,
            "E970 and E988, the client ends"
        );
        assert_eq!(to_listener.get(TcpState::CloseWait), 1);
        assert_eq!(to_listener.get(TcpState::TimeWait), 1);
        // The server ends (local port 53401) and the listener are not connections *to* it.
        assert_eq!(to_listener.get(TcpState::FinWait2), 0);
        assert_eq!(to_listener.get(TcpState::Listen), 0);
        assert_eq!(to_listener.total(), 4);
        assert_eq!(t.connections(5432).unwrap().total(), 0);
        assert_eq!(t.connections(38381), None, "not watched");

        assert_eq!(
            t.listening(53401),
            Some(Listening {
                listeners: 1,
                accept_queue: 1
            }),
            "the one connection never accepted"
        );
        assert_eq!(
            t.listening(2024),
            Some(Listening {
                listeners: 1,
                accept_queue: 0
            })
        );
        assert_eq!(t.listening(8080), Some(Listening::default()), "nothing listens there");

        let all = t.all();
        assert_eq!(all.get(TcpState::Listen), 2);
        assert_eq!(all.get(TcpState::Established), 5);
        assert_eq!(all.get(TcpState::CloseWait), 1);
        assert_eq!(all.get(TcpState::TimeWait), 1);
        assert_eq!(all.get(TcpState::FinWait2), 1);
        assert_eq!(all.total(), 10);
        assert_eq!(t.watched().map(|(port, _)| port).collect::<Vec<_>>(), [5432, 53401]);
    }

    #[test]
    fn both_tables_add_up_and_a_dual_stack_listener_is_one_port() {
        let t = tally(&[38381, 36473], &[38381, 36473], &[TCP, TCP6]);
        assert_eq!(t.malformed(), 0);
        // The IPv4 client of the dual-stack listener is in tcp; its accepted end, IPv4-mapped,
        // in tcp6 (remote port 0xDACA: not a connection to 38381).
        assert_eq!(t.connections(38381).unwrap().get(TcpState::Established), 1);
        assert_eq!(t.connections(38381).unwrap().total(), 1);
        assert_eq!(t.connections(36473).unwrap().get(TcpState::Established), 1);
        assert_eq!(t.listening(38381).unwrap().listeners, 1);
        assert_eq!(t.listening(36473).unwrap().listeners, 1);
        assert_eq!(t.all().total(), 15);
    }

    #[test]
    fn listeners_on_one_port_in_both_families_are_summed() {
        let v4 = "   0: 00000000:1F90 00000000:0000 0A 00000000:00000003 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n";
        let v6 = "   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000004 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0\n";
        let t = tally(&[8080], &[8080], &[v4, v6]);
        assert_eq!(
            t.listening(8080),
            Some(Listening {
                listeners: 2,
                accept_queue: 7
            })
        );
        assert_eq!(
            t.connections(8080).unwrap().total(),
            0,
            "a listener is not a connection"
        );
    }

    #[test]
    fn a_stuck_connect_is_syn_sent_with_its_unacknowledged_syn() {
        let t = tally(&[5432], &[], &[SYN_SENT]);
        assert_eq!(t.connections(5432).unwrap().get(TcpState::SynSent), 1);
        let socket = parse_line(SYN_SENT.trim_end().as_bytes()).unwrap();
        assert_eq!(socket.state, TcpState::SynSent);
        assert_eq!(socket.remote.port(), 5432);
        assert_eq!(socket.tx_queue, 1);
        assert_eq!(socket.rx_queue, 0);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn addresses_decode_word_by_word_and_ipv4_mapped_becomes_ipv4() {
        let line = |table: &str, n: usize| parse_line(table.lines().nth(n).unwrap().as_bytes()).unwrap();
        let listener = line(TCP, 1);
        assert_eq!(listener.local, "127.0.0.1:53401".parse().unwrap());
        assert_eq!(listener.remote, "0.0.0.0:0".parse().unwrap());
        assert_eq!(listener.state, TcpState::Listen);
        assert_eq!(listener.rx_queue, 1);

        let loopback6 = line(TCP6, 4);
        assert_eq!(loopback6.local, "[::1]:57856".parse().unwrap());
        assert_eq!(loopback6.remote, "[::1]:36473".parse().unwrap());

        let mapped = line(TCP6, 3);
        assert_eq!(mapped.local, "127.0.0.1:38381".parse().unwrap());
        assert_eq!(mapped.remote, "127.0.0.1:56010".parse().unwrap());

        // fd00::1234:5678 (hand-made): each word is the address's bytes read little-endian.
        let made =
            "0: 000000FD000000000000000078563412:0050 00000000000000000000000000000000:0000 0A 00000000:00000000";
        let socket = parse_line(made.as_bytes()).unwrap();
        assert_eq!(socket.local, "[fd00::1234:5678]:80".parse().unwrap());
        assert_eq!(
            parse_line(b"0: 0A0B0C0D:0050 00000000:0000 0A 00000000:00000000")
                .unwrap()
                .local,
            "13.12.11.10:80".parse().unwrap()
        );
    }

    #[test]
    fn an_ipv4_mapped_connection_counts_like_an_ipv4_one() {
        // A gateway on a dual-stack socket talking to PostgreSQL over IPv4: listed in tcp6.
        let mapped = "   0: 0000000000000000FFFF0000050A000A:C350 0000000000000000FFFF0000070A000A:1538 08 00000000:00000001 00:00000000 00000000   999        0 5 1 0 20 4 0 10 -1\n";
        let plain = "   0: 050A000A:C351 070A000A:1538 08 00000000:00000001 00:00000000 00000000   999        0 6 1 0 20 4 0 10 -1\n";
        let t = tally(&[5432], &[], &[plain, mapped]);
        assert_eq!(t.connections(5432).unwrap().get(TcpState::CloseWait), 2);
    }

    #[test]
    fn malformed_lines_are_skipped_and_counted_and_the_good_ones_still_count() {
        let good = "   5: 0100007F:E988 0100007F:1538 01 00000000:00000000 00:00000000 00000000     0        0 70830 1 0 20 0 0 11 -1";
        let long = format!(
            "   6: 0100007F:E988 0100007F:1538 01 00000000:00000000 {}",
            "0".repeat(600)
        );
        let lines: Vec<(String, Option<Malformed>)> = vec![
            ("garbage".into(), Some(Malformed::Fields)),
            ("   1: 0100007F:E988 0100007F:1538 01".into(), Some(Malformed::Fields)),
            (
                "   x: 0100007F:E988 0100007F:1538 01 00000000:00000000".into(),
                Some(Malformed::Slot),
            ),
            (
                ":  0100007F:E988 0100007F:1538 01 00000000:00000000".into(),
                Some(Malformed::Slot),
            ),
            (
                "   1: 0100007G:E988 0100007F:1538 01 00000000:00000000".into(),
                Some(Malformed::Address),
            ),
            (
                "   1: 100007F:E988 0100007F:1538 01 00000000:00000000".into(),
                Some(Malformed::Address),
            ),
            (
                "   1: 0100007FE988 0100007F:1538 01 00000000:00000000".into(),
                Some(Malformed::Address),
            ),
            (
                "   1: 0100007F:E98 0100007F:1538 01 00000000:00000000".into(),
                Some(Malformed::Port),
            ),
            (
                "   1: 0100007F:E988 0100007F:15389 01 00000000:00000000".into(),
                Some(Malformed::Port),
            ),
            (
                "   1: 0100007F:E988 0100007F:-538 01 00000000:00000000".into(),
                Some(Malformed::Port),
            ),
            (
                "   1: 0100007F:E988 0100007F:1538 1 00000000:00000000".into(),
                Some(Malformed::StateField),
            ),
            (
                "   1: 0100007F:E988 0100007F:1538 0D 00000000:00000000".into(),
                Some(Malformed::UnknownState(13)),
            ),
            (
                "   1: 0100007F:E988 0100007F:1538 00 00000000:00000000".into(),
                Some(Malformed::UnknownState(0)),
            ),
            (
                "   1: 0100007F:E988 0100007F:1538 FF 00000000:00000000".into(),
                Some(Malformed::UnknownState(0xFF)),
            ),
            (
                "   1: 0100007F:E988 0100007F:1538 01 0000000000000000".into(),
                Some(Malformed::Queues),
            ),
            (
                "   1: 0100007F:E988 0100007F:1538 01 00000000:0000000".into(),
                Some(Malformed::Queues),
            ),
            (
                "   1: 0100007F:E988 0100007F:1538 01 0000000Z:00000000".into(),
                Some(Malformed::Queues),
            ),
            (
                "   1: 0100007F:E988 0100007F:1538 01 +0000000:00000000".into(),
                Some(Malformed::Queues),
            ),
            (
                "   1: 0100007F:E988 \u{e9}100007F:1538 01 00000000:00000000".into(),
                Some(Malformed::Address),
            ),
            (long, Some(Malformed::TooLong)),
            (good.into(), None),
            (format!("{good}\r"), None),
            (String::new(), None),
            ("   ".into(), None),
        ];
        for (line, expected) in &lines {
            if let Some(why) = expected {
                assert_eq!(parse_line(line.as_bytes()).err(), Some(*why), "{line:?}");
            }
        }
        let mut table = String::from("  sl  local_address rem_address   st\n");
        for (line, _) in &lines {
            table.push_str(line);
            table.push('\n');
        }
        let t = tally(&[5432], &[], &[&table]);
        assert_eq!(
            t.malformed(),
            lines.iter().filter(|(_, why)| why.is_some()).count() as u64
        );
        assert_eq!(t.first_malformed(), Some(Malformed::Fields));
        assert_eq!(t.connections(5432).unwrap().get(TcpState::Established), 2);
        assert!(!t.truncated());

        // Bytes that are not text at all, and a NUL in the middle of a line.
        let mut t = Tally::new(&[5432], &[]);
        t.read_table(&b"\xff\xfe\x00\x01\n   1: 0100007F:E988\x00 0100007F:1538 01 00000000:00000000\n\n"[..])
            .unwrap();
        assert_eq!(t.malformed(), 2);
        assert_eq!(t.all().total(), 0);
    }

    #[test]
    fn a_table_cut_inside_a_line_is_truncated_not_malformed() {
        let cut = &TCP[..TCP.len() - 40];
        let t = tally(&[53401], &[], &[cut]);
        assert!(t.truncated());
        assert_eq!(t.malformed(), 0);
        assert_eq!(t.all().total(), 9, "the cut last line is not counted");

        let mut t = Tally::new(&[], &[]);
        t.read_table("9".repeat(2000).as_bytes()).unwrap();
        assert!(t.truncated(), "an overlong unterminated tail");
        assert_eq!(t.malformed(), 0);
    }

    /// A source that writes `n` kernel-like lines on demand, so that a table of any size is
    /// streamed without being held: the test of "no per-socket memory" is that this works at
    /// all through a 64-byte buffer.
    struct Generated {
        n: u32,
        next: u32,
        pending: Vec<u8>,
    }

    impl io::Read for Generated {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.pending.is_empty() {
                if self.next == self.n {
                    return Ok(0);
                }
                let i = self.next;
                self.next += 1;
                // Remote port 5432 or 6379 in turn; every seventh line CLOSE_WAIT; every
                // thousandth line broken.
                let port = if i.is_multiple_of(2) { 0x1538 } else { 0x18EB };
                let state = if i.is_multiple_of(7) { "08" } else { "01" };
                let line = if i % 1000 == 999 {
                    format!("{i:4}: 0A00{:04X}:{:04X} 0B00000A:{port:04X}\n", i & 0xFFFF, i & 0xFFFF)
                } else {
                    format!(
                        "{i:4}: 0A00{:04X}:{:04X} 0B00000A:{port:04X} {state} 00000000:00000000 00:00000000 00000000  1000        0 {i} 1 0000000000000000 20 4 30 10 -1\n",
                        i & 0xFFFF,
                        i & 0xFFFF
                    )
                };
                self.pending = line.into_bytes();
            }
            let n = buf.len().min(self.pending.len());
            buf[..n].copy_from_slice(&self.pending[..n]);
            self.pending.drain(..n);
            Ok(n)
        }
    }

    #[test]
    fn a_hundred_thousand_sockets_stream_through_a_small_buffer() {
        let n = 100_000u32;
        let mut t = Tally::new(&[5432, 6379], &[]);
        let source = Generated {
            n,
            next: 0,
            pending: Vec::new(),
        };
        t.read_table(BufReader::with_capacity(64, source)).unwrap();
        let broken = u64::from(n / 1000);
        assert_eq!(t.malformed(), broken);
        assert!(!t.truncated());
        let counted: u64 = t.watched().map(|(_, s)| s.total()).sum();
        assert_eq!(counted, u64::from(n) - broken);
        let close_wait: u64 = t.watched().map(|(_, s)| s.get(TcpState::CloseWait)).sum();
        let expected = (0..n).filter(|i| i.is_multiple_of(7) && i % 1000 != 999).count() as u64;
        assert_eq!(close_wait, expected);
    }

    #[test]
    fn more_lines_than_the_cap_stop_the_read_and_say_so() {
        let mut t = Tally::new(&[53401], &[]);
        t.read_table_at_most(TCP.as_bytes(), 4).unwrap();
        assert!(t.truncated());
        assert_eq!(t.all().total(), 3, "the header and three sockets");

        let mut t = Tally::new(&[53401], &[]);
        t.read_table_at_most(TCP.as_bytes(), 11).unwrap();
        assert!(!t.truncated(), "exactly the cap");
        assert_eq!(t.all().total(), 10);
    }

    #[test]
    fn an_overlong_line_is_skipped_through_a_small_buffer_and_the_next_one_read() {
        let table = format!(
            "{}\n{SYN_SENT}{}\n{SYN_SENT}",
            "x".repeat(5000),
            "y".repeat(MAX_LINE_BYTES + 1)
        );
        let mut t = Tally::new(&[5432], &[]);
        t.read_table(BufReader::with_capacity(16, table.as_bytes())).unwrap();
        assert_eq!(t.malformed(), 2);
        assert_eq!(t.first_malformed(), Some(Malformed::TooLong));
        assert_eq!(t.connections(5432).unwrap().get(TcpState::SynSent), 2);
        assert!(!t.truncated());
    }

    /// Whatever kernel runs the tests: its tables, with a listener and a connection of ours in
    /// them, parse without a skipped line, and its netstat has the counters.
    #[test]
    fn this_kernels_own_tables_parse_whole() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut t = Tally::new(&[port], &[port]);
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            match std::fs::File::open(table) {
                Ok(file) => t.read_table(BufReader::new(file)).unwrap(),
                Err(e) => assert_eq!(e.kind(), io::ErrorKind::NotFound, "{table}: {e}"),
            }
        }
        assert_eq!(t.malformed(), 0, "{:?}", t.first_malformed());
        assert!(!t.truncated());
        assert_eq!(t.connections(port).unwrap().get(TcpState::Established), 1);
        assert_eq!(t.listening(port).unwrap().listeners, 1);
        assert_eq!(t.listening(port).unwrap().accept_queue, 1, "never accepted");
        let netstat = std::fs::read("/proc/net/netstat").unwrap();
        let counters = listen_counters(&netstat).unwrap();
        assert!(counters.overflows.is_some() && counters.drops.is_some(), "{counters:?}");
    }

    #[test]
    fn the_captured_netstat_gives_the_listen_counters() {
        assert_eq!(
            listen_counters(NETSTAT.as_bytes()),
            Ok(ListenCounters {
                overflows: Some(761),
                drops: Some(761)
            })
        );
    }

    #[test]
    fn netstat_pairs_are_read_by_position_and_damage_is_an_error() {
        let made = "IpExt: InNoRoutes ListenOverflows\nIpExt: 5 6\nTcpExt: A ListenDrops B ListenOverflows\nTcpExt: 1 20 3 17\n";
        assert_eq!(
            listen_counters(made.as_bytes()),
            Ok(ListenCounters {
                overflows: Some(17),
                drops: Some(20)
            }),
            "the IpExt pair is not read"
        );
        assert_eq!(
            listen_counters(b"TcpExt: A ListenDrops\nTcpExt: 1 2\n"),
            Ok(ListenCounters {
                overflows: None,
                drops: Some(2)
            }),
            "a counter this kernel does not list"
        );
        assert_eq!(
            listen_counters(b"TcpExt: ListenOverflows ListenDrops\nTcpExt: x -1\n"),
            Ok(ListenCounters::default()),
            "values that are not counters"
        );
        assert_eq!(listen_counters(b"IpExt: A\nIpExt: 1\n"), Err(NetstatError::NoTcpExt));
        assert_eq!(listen_counters(b""), Err(NetstatError::NoTcpExt));
        assert_eq!(
            listen_counters(b"TcpExt: A ListenOverflows\nTcpExt: 1\n"),
            Err(NetstatError::Mismatch { names: 2, values: 1 })
        );
        assert_eq!(
            listen_counters(b"TcpExt: A ListenOverflows\nTcpExt: 1 76"),
            Err(NetstatError::NoValues),
            "a values line cut by the read: 761 may have become 76"
        );
        assert_eq!(
            listen_counters(b"TcpExt: A ListenOverflows\nIpExt: 1 2\n"),
            Err(NetstatError::NoValues)
        );
        assert_eq!(listen_counters(b"TcpExt: A\n"), Err(NetstatError::NoValues));
        let cut = &NETSTAT[..NETSTAT.find("\nIpExt").unwrap() - 3];
        assert_eq!(listen_counters(cut.as_bytes()), Err(NetstatError::NoValues));
        // Never a panic, whatever the bytes.
        for bytes in [
            &b"TcpExt:"[..],
            b"TcpExt:\nTcpExt:\n",
            b"\xff\nTcpExt: \xff\nTcpExt: \xff\n",
        ] {
            let _ = listen_counters(bytes);
        }
    }
}
