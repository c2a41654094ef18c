//! Host tests of the kiosk core: a simulated edge that speaks the real
//! protocol (`sync_protocol::kiosk::EdgeLink`, real keys, real sealing) over
//! an in-memory link whose frames the test delivers, delays or drops.

mod prop;
mod sim;
mod table;
