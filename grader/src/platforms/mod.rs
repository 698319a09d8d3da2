//! The course platforms' result formats, beside Gradescope's (in
//! [`crate::report`]): one module per platform, each turning a
//! [`LabReport`](crate::report::LabReport) into what that platform reads,
//! and a submission that could not be graded at all (it does not compile,
//! it was refused) into a zero with the reason.
//!
//! - [`classroom`]: GitHub Classroom's autograding reporter (`--format classroom`).
//! - [`prairielearn`]: PrairieLearn's external grader results.json (`--format prairielearn`).
//! - [`autolab`]: Autolab's feedback, its last line the scores JSON (`--format autolab`).

pub mod autolab;
pub mod classroom;
pub mod prairielearn;
