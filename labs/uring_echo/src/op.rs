//! Which operation a completion belongs to: the `user_data` encoding.
//!
//! A completion (CQE) says only how an operation ended (`result`, `flags`)
//! and hands back the 64-bit `user_data` its submission (SQE) carried. That
//! number is all the server has to find what the operation was for, so it
//! packs both: the kind of operation in the top byte, the connection's slab
//! token in the low 32 bits.
//!
//! A token is reused once its connection is gone. That is safe only because
//! a connection stays in the slab until the completion of every operation
//! it submitted has arrived (see `conn.rs`): no late completion can ever
//! carry the token of a connection that has since been replaced.

/// What a completion is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// An accept on the listener (multishot or single-shot).
    Accept,
    /// The timer that re-arms accepting after an error such as EMFILE.
    AcceptRetry,
    /// An operation on the connection with this slab token.
    Conn(usize, ConnOp),
}

/// The operations a connection submits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnOp {
    Recv,
    Send,
    /// `shutdown(SHUT_WR)`: the lingering close's FIN.
    Shutdown,
    /// Cancels the connection's pending receive, once it is of no use.
    Cancel,
}

const KIND_SHIFT: u32 = 56;
const TOKEN_MASK: u64 = u32::MAX as u64;

impl Op {
    /// The `user_data` to put in the submission.
    pub fn user_data(self) -> u64 {
        let (kind, token) = match self {
            Op::Accept => (0, 0),
            Op::AcceptRetry => (1, 0),
            Op::Conn(token, ConnOp::Recv) => (2, token),
            Op::Conn(token, ConnOp::Send) => (3, token),
            Op::Conn(token, ConnOp::Shutdown) => (4, token),
            Op::Conn(token, ConnOp::Cancel) => (5, token),
        };
        assert!(token as u64 <= TOKEN_MASK, "slab token {token} too large");
        (kind << KIND_SHIFT) | token as u64
    }

    /// The operation a completion's `user_data` names.
    pub fn from_user_data(user_data: u64) -> Op {
        let token = (user_data & TOKEN_MASK) as usize;
        match user_data >> KIND_SHIFT {
            0 => Op::Accept,
            1 => Op::AcceptRetry,
            2 => Op::Conn(token, ConnOp::Recv),
            3 => Op::Conn(token, ConnOp::Send),
            4 => Op::Conn(token, ConnOp::Shutdown),
            5 => Op::Conn(token, ConnOp::Cancel),
            kind => panic!("user_data {user_data:#x}: no operation of kind {kind}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_survives_the_round_trip() {
        let ops = [
            Op::Accept,
            Op::AcceptRetry,
            Op::Conn(0, ConnOp::Recv),
            Op::Conn(7, ConnOp::Send),
            Op::Conn(10_000, ConnOp::Shutdown),
            Op::Conn(u32::MAX as usize, ConnOp::Cancel),
        ];
        for op in ops {
            assert_eq!(Op::from_user_data(op.user_data()), op);
        }
    }
}
