//! A Cortex-M4F image of the kiosk core (`thumbv7em-none-eabihf`). It
//! exists to be built: that it links proves the core needs no allocator and
//! fits the board in `memory.x`, and `llvm-size` of it is the code size in
//! BENCHMARKS.md. Every input is hidden from the optimiser with
//! `black_box`, so the whole state machine, the link and the sealing stay
//! in. A real board's shell puts its TCP stack, buttons and display where
//! the `black_box`es are. On the host it is an empty program.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
mod board {
    use core::hint::black_box;

    use firmware::{Button, Config, Kiosk, Language, Uptime};
    use sync_protocol::DeviceId;
    use sync_protocol::kiosk::LinkKey;

    // The runtime calls this after reset; exporting it is the one thing
    // here Rust counts as unsafe.
    #[allow(unsafe_code)]
    #[cortex_m_rt::entry]
    fn main() -> ! {
        let mut kiosk = Kiosk::new(Config {
            device: DeviceId::from_bytes(black_box([0; 16])),
            key: LinkKey(black_box([0; 32])),
            boot: black_box(0),
            firmware: 1,
            language: Language::Indonesian,
        });
        let rx = [0u8; 256];
        let mut now = 0u64;
        loop {
            now = black_box(now + 10);
            let t = Uptime(now);
            if black_box(false) {
                kiosk.connected(t, black_box([0; 32]));
            }
            if black_box(false) {
                kiosk.disconnected(t);
            }
            kiosk.receive(t, black_box(&rx[..black_box(0)]));
            if black_box(false) {
                kiosk.button(t, black_box(Button::Ok));
            }
            kiosk.tick(t);
            while let Some(frame) = kiosk.poll_transmit(t) {
                black_box(&frame);
            }
            black_box(kiosk.screen(t));
            black_box(kiosk.status());
            black_box(kiosk.poll_timeout());
        }
    }

    /// The kiosk's whole state lives on the stack (2,400 bytes when this
    /// was written); a change that grows it past 4 KiB must say why.
    const _: () = assert!(core::mem::size_of::<Kiosk>() <= 4 * 1024);

    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
        loop {
            core::hint::spin_loop();
        }
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
