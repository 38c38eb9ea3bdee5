//! When the kernel received the bytes a read returns, so that a step's clock can
//! end when the response arrived rather than when the probe's thread got round
//! to reading it (a busy runtime, a late wake-up: the probe's delay, not the
//! network's or the server's).
//!
//! On Linux each read is a `recvmsg` on a socket with `SO_TIMESTAMPNS` on: the
//! kernel hands back, with the bytes, the wall-clock time it received the last
//! packet they came in. That time is turned into an [`Instant`] by its age
//! (wall clock now − stamp) taken at the read. A stamp is not used (the read
//! counts as received when it is read, as without stamps) when:
//! - the wall clock moved against the monotonic clock by more than
//!   [`MAX_CLOCK_DRIFT`] since the connection last wrote (a step of the system
//!   clock would misplace the stamp by that step);
//! - the connection ever received a packet out of order (`tcpi_rcv_ooopack`):
//!   then the last packet of a read may have arrived before the lost one that
//!   let the read happen, and its stamp would hide the retransmission's time;
//! - the kernel does not say (`TCP_INFO` too old to count out-of-order packets,
//!   no stamp in the answer).
//!
//! Elsewhere (not Linux, or the option refused) reads are not stamped.
//!
//! The same goes for a new connection's TCP handshake: the kernel does not
//! stamp it, but measures it ([`handshake_rtt`]: `TCP_INFO`'s first round-trip
//! sample, SYN sent to SYN-ACK received), so `connect` ends at the attempt's
//! start plus that, not when the thread saw the connection up.

use std::time::{Duration, Instant};

/// The most the wall clock may move against the monotonic clock between a
/// connection's last write and a read for the read's stamp to be used. NTP's
/// slewing moves it by at most 0.5 ms a second; a step moves it at once.
pub const MAX_CLOCK_DRIFT: Duration = Duration::from_millis(1);

/// The most a stamped read asks for at once: the part of the caller's buffer
/// handed to `recvmsg` is zeroed first, so it is bounded.
#[cfg(target_os = "linux")]
const MAX_READ: usize = 64 * 1024;

#[cfg(target_os = "linux")]
pub(crate) use linux::{ReceiveTimes, handshake_rtt};

/// The kernel's measure of a new connection's TCP handshake (SYN sent to
/// SYN-ACK received): none where the kernel does not say.
#[cfg(not(target_os = "linux"))]
pub(crate) fn handshake_rtt(_: &tokio::net::TcpStream) -> Option<Duration> {
    None
}

/// Where stamps are not available: never enabled.
#[cfg(not(target_os = "linux"))]
pub(crate) struct ReceiveTimes(std::convert::Infallible);

#[cfg(not(target_os = "linux"))]
impl ReceiveTimes {
    pub(crate) fn enable(_: &tokio::net::TcpStream) -> Option<ReceiveTimes> {
        None
    }

    pub(crate) fn wrote(&mut self) {
        match self.0 {}
    }

    pub(crate) fn poll_read(
        &mut self,
        _: &tokio::net::TcpStream,
        _: &mut std::task::Context<'_>,
        _: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<Option<Instant>>> {
        match self.0 {}
    }
}

/// The instant a packet stamped `stamp` (wall clock) was received, given the
/// wall clock `wall` and the monotonic clock `now` read together: `None` when
/// the stamp is in the future.
fn instant_of(stamp: std::time::SystemTime, wall: std::time::SystemTime, now: Instant) -> Option<Instant> {
    now.checked_sub(wall.duration_since(stamp).ok()?)
}

/// Whether the wall clock kept pace with the monotonic clock between two
/// readings of both, within [`MAX_CLOCK_DRIFT`].
fn clocks_agree(then: (std::time::SystemTime, Instant), now: (std::time::SystemTime, Instant)) -> bool {
    let Ok(wall) = now.0.duration_since(then.0) else { return false };
    let monotonic = now.1.saturating_duration_since(then.1);
    wall.abs_diff(monotonic) <= MAX_CLOCK_DRIFT
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
    use std::task::{Context, Poll, ready};
    use std::time::{Instant, SystemTime, UNIX_EPOCH};

    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt};
    use nix::sys::time::TimeSpec;
    use tokio::io::{Interest, ReadBuf};
    use tokio::net::TcpStream;

    use super::{MAX_READ, clocks_agree, instant_of};

    /// A connection's stamped reads.
    pub(crate) struct ReceiveTimes {
        /// Room for the one control message a read brings (`SCM_TIMESTAMPNS`).
        control: Vec<u8>,
        /// Both clocks as the connection last wrote: `None` before its first write.
        wrote_at: Option<(SystemTime, Instant)>,
        /// Cleared for good when the connection has received a packet out of order.
        trusted: bool,
    }

    impl ReceiveTimes {
        /// Turns stamps on for `stream`: `None` when the kernel refuses.
        pub(crate) fn enable(stream: &TcpStream) -> Option<ReceiveTimes> {
            setsockopt(stream, sockopt::ReceiveTimestampns, &true).ok()?;
            Some(ReceiveTimes { control: nix::cmsg_space!(TimeSpec), wrote_at: None, trusted: true })
        }

        /// The connection wrote: both clocks are noted, for [`super::clocks_agree`].
        pub(crate) fn wrote(&mut self) {
            self.wrote_at = Some((SystemTime::now(), Instant::now()));
        }

        /// Reads what `stream` has into `buf`, with the instant the kernel received
        /// it when that can be trusted (`None` otherwise, and at the end of the stream).
        pub(crate) fn poll_read(
            &mut self,
            stream: &TcpStream,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<Option<Instant>>> {
            loop {
                ready!(stream.poll_read_ready(cx))?;
                let into = buf.initialize_unfilled_to(buf.remaining().min(MAX_READ));
                let fd = stream.as_raw_fd();
                let control = &mut self.control;
                match stream.try_io(Interest::READABLE, || receive(fd, into, control)) {
                    Ok((read, stamp)) => {
                        buf.advance(read);
                        let at = stamp.filter(|_| read > 0).and_then(|stamp| self.instant(stream.as_fd(), stamp));
                        return Poll::Ready(Ok(at));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
        }

        /// The instant of a read's stamp, when it can be trusted.
        fn instant(&mut self, socket: BorrowedFd<'_>, stamp: SystemTime) -> Option<Instant> {
            let now = (SystemTime::now(), Instant::now());
            if !self.trusted || !clocks_agree(self.wrote_at?, now) {
                return None;
            }
            if out_of_order_packets(socket) != Some(0) {
                self.trusted = false;
                return None;
            }
            instant_of(stamp, now.0, now.1)
        }
    }

    /// One `recvmsg` into `into`: the bytes read and the receive stamp, if any.
    fn receive(fd: i32, into: &mut [u8], control: &mut [u8]) -> io::Result<(usize, Option<SystemTime>)> {
        let mut buffers = [io::IoSliceMut::new(into)];
        let message = recvmsg::<()>(fd, &mut buffers, Some(control), MsgFlags::empty())?;
        let stamp = message.cmsgs().ok().and_then(|mut messages| {
            messages.find_map(|m| match m {
                ControlMessageOwned::ScmTimestampns(at) => UNIX_EPOCH.checked_add(at.into()),
                _ => None,
            })
        });
        Ok((message.bytes, stamp))
    }

    /// How many packets the connection has received out of order
    /// (`tcpi_rcv_ooopack`, Linux 5.4 on): `None` when the kernel does not say.
    fn out_of_order_packets(socket: BorrowedFd<'_>) -> Option<u32> {
        let (info, len) = tcp_info(socket)?;
        (len >= std::mem::offset_of!(libc::tcp_info, tcpi_rcv_ooopack) + 4).then_some(info.tcpi_rcv_ooopack)
    }

    /// The round trip the kernel measured on a connection that has just been
    /// set up: its TCP handshake, SYN sent to SYN-ACK received (the first
    /// sample is the smoothed value as it stands). `None` when a SYN was sent
    /// again (the sample would be the last SYN's, hiding the wait before it)
    /// or the kernel does not say.
    pub(crate) fn handshake_rtt(stream: &TcpStream) -> Option<std::time::Duration> {
        let (info, len) = tcp_info(stream.as_fd())?;
        let needed = std::mem::offset_of!(libc::tcp_info, tcpi_total_retrans) + 4;
        (len >= needed && info.tcpi_total_retrans == 0 && info.tcpi_rtt > 0)
            .then(|| std::time::Duration::from_micros(info.tcpi_rtt.into()))
    }

    /// The connection's `TCP_INFO` and how many bytes of it the kernel filled.
    fn tcp_info(socket: BorrowedFd<'_>) -> Option<(libc::tcp_info, usize)> {
        let mut info = std::mem::MaybeUninit::<libc::tcp_info>::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: `info` has room for `len` bytes, the most `getsockopt` writes;
        // it sets `len` to the number it wrote.
        let done = unsafe {
            libc::getsockopt(socket.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_INFO, info.as_mut_ptr().cast(), &mut len)
        };
        if done != 0 {
            return None;
        }
        // SAFETY: zeroed, then partly written by the kernel: integers only, all valid.
        Some((unsafe { info.assume_init() }, len as usize))
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    #[test]
    fn a_stamp_becomes_the_instant_its_age_ago() {
        let (wall, now) = (SystemTime::now(), Instant::now());
        let stamp = wall - Duration::from_millis(7);
        assert_eq!(instant_of(stamp, wall, now), Some(now - Duration::from_millis(7)));
        assert_eq!(instant_of(wall + Duration::from_millis(1), wall, now), None, "a stamp in the future");
    }

    #[test]
    fn a_clock_step_between_write_and_read_is_seen() {
        let then = (SystemTime::now(), Instant::now());
        let later = |wall: Duration, monotonic: Duration| (then.0 + wall, then.1 + monotonic);
        let second = Duration::from_secs(1);
        assert!(clocks_agree(then, later(second, second)));
        assert!(clocks_agree(then, later(second + Duration::from_micros(500), second)), "slewing");
        assert!(!clocks_agree(then, later(second + Duration::from_millis(5), second)), "stepped forward");
        assert!(!clocks_agree(then, later(second - Duration::from_millis(5), second)), "stepped back");
        assert!(!clocks_agree(then, (then.0 - second, then.1)), "before the write");
    }
}
