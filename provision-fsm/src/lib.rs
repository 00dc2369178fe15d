//! The BareMetalHost lifecycle and the conductor's node states as pure transition
//! functions: an event and the current time in, a new state and actions out.
//!
//! Status: skeleton; the state machines arrive with the provision-fsm issue.
