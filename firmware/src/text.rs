//! Every word the kiosk shows, in Bahasa Indonesia and English, each at
//! most 20 characters of plain ASCII (a character LCD has no accents).

use sync_protocol::FoodType;
use sync_protocol::kiosk::{Outcome, Refusal, Withdrawal};

/// The display language; the Language button switches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Language {
    #[default]
    Indonesian,
    English,
}

impl Language {
    pub const fn other(self) -> Language {
        match self {
            Language::Indonesian => Language::English,
            Language::English => Language::Indonesian,
        }
    }
}

/// A phrase; [`Text::get`] gives it in a language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Text {
    Title,
    NotConnectedYet,
    NoOffers,
    Online,
    Connecting,
    Offline,
    LinkFailed,
    Queued,
    Reply,
    PickUpBy,
    PickedUp,
    Accepting,
    Declining,
    SavingPickUp,
    SavingDelivery,
    Sending,
    WaitingOffline,
    AcceptDecline,
    OkPickedUp,
    OkRecordDelivery,
    DeclineThis,
    YesNo,
    AmountDelivered,
    ChangeMax,
    SendCancel,
    QueueFull,
    Thanks,
    Expired,
    Withdrawn(Withdrawal),
    Outcome(Outcome),
    Refused(Refusal),
    Food(FoodType),
}

impl Text {
    /// Every phrase, for the length test.
    #[cfg(test)]
    pub fn all() -> std::vec::Vec<Text> {
        use Text::*;
        use sync_protocol::kiosk::Outcome as O;
        use sync_protocol::kiosk::Refusal as R;
        use sync_protocol::kiosk::Withdrawal as W;
        let mut all = std::vec![
            Title,
            NotConnectedYet,
            NoOffers,
            Online,
            Connecting,
            Offline,
            LinkFailed,
            Queued,
            Reply,
            PickUpBy,
            PickedUp,
            Accepting,
            Declining,
            SavingPickUp,
            SavingDelivery,
            Sending,
            WaitingOffline,
            AcceptDecline,
            OkPickedUp,
            OkRecordDelivery,
            DeclineThis,
            YesNo,
            AmountDelivered,
            ChangeMax,
            SendCancel,
            QueueFull,
            Thanks,
            Expired,
        ];
        all.extend([W::TimedOut, W::Expired, W::ClaimedByAnother, W::Cancelled].map(Withdrawn));
        let outcomes = [
            O::Done,
            O::LostRace,
            O::Expired,
            O::NotYours,
            O::Invalid,
            O::IdReused,
            O::Busy { retry_after_ms: 0 },
        ];
        all.extend(outcomes.map(Text::Outcome));
        let refusals = [
            R::UnknownDevice,
            R::Revoked,
            R::Version,
            R::Protocol,
            R::RateLimited { retry_after_ms: 0 },
        ];
        all.extend(refusals.map(Refused));
        all.extend(FoodType::ALL.map(Food));
        all
    }

    /// `(Bahasa Indonesia, English)`.
    const fn pair(self) -> (&'static str, &'static str) {
        match self {
            Text::Title => ("PAHLAWAN PANGAN", "PAHLAWAN PANGAN"),
            Text::NotConnectedYet => ("Belum tersambung", "Not connected yet"),
            Text::NoOffers => ("Belum ada tawaran", "No offers yet"),
            Text::Online => ("Daring", "Online"),
            Text::Connecting => ("Menyambung...", "Connecting..."),
            Text::Offline => ("Luring", "Offline"),
            Text::LinkFailed => ("Sambungan gagal", "Link failed"),
            Text::Queued => ("antre", "queued"),
            Text::Reply => ("Jawab", "Reply"),
            Text::PickUpBy => ("Ambil sblm", "Pick up by"),
            Text::PickedUp => ("Sudah diambil", "Picked up"),
            Text::Accepting => ("Menerima...", "Accepting..."),
            Text::Declining => ("Menolak...", "Declining..."),
            Text::SavingPickUp => ("Mencatat ambil...", "Saving pick-up..."),
            Text::SavingDelivery => ("Mencatat kirim...", "Saving delivery..."),
            Text::Sending => ("Mengirim...", "Sending..."),
            Text::WaitingOffline => ("Antre: luring", "Queued: offline"),
            Text::AcceptDecline => ("OK=Terima X=Tolak", "OK=Accept X=Decline"),
            Text::OkPickedUp => ("OK=Sudah diambil", "OK=Picked up"),
            Text::OkRecordDelivery => ("OK=Catat terkirim", "OK=Record delivery"),
            Text::DeclineThis => ("Tolak tawaran ini?", "Decline this offer?"),
            Text::YesNo => ("OK=Ya  X=Tidak", "OK=Yes  X=No"),
            Text::AmountDelivered => ("Jumlah diantar:", "Amount delivered:"),
            Text::ChangeMax => ("^v maks", "^v max"),
            Text::SendCancel => ("OK=Kirim X=Batal", "OK=Send X=Cancel"),
            Text::QueueFull => ("Antrean penuh", "Queue full"),
            Text::Thanks => ("Terima kasih!", "Thank you!"),
            Text::Expired => ("Kedaluwarsa", "Expired"),
            Text::Withdrawn(w) => match w {
                Withdrawal::TimedOut => ("Waktu jawab habis", "Time to reply over"),
                Withdrawal::Expired => ("Makanan kedaluwarsa", "Food expired"),
                Withdrawal::ClaimedByAnother => ("Diambil pihak lain", "Taken by another"),
                Withdrawal::Cancelled => ("Tawaran dibatalkan", "Offer cancelled"),
            },
            Text::Outcome(o) => match o {
                Outcome::Done => ("Tercatat", "Recorded"),
                Outcome::LostRace => ("Kalah cepat", "Someone was faster"),
                Outcome::Expired => ("Sudah kedaluwarsa", "Already expired"),
                Outcome::NotYours => ("Bukan untuk Anda", "Not yours"),
                Outcome::Invalid => ("Ditolak edge", "Refused by edge"),
                Outcome::IdReused => ("Galat kiosk", "Kiosk error"),
                Outcome::Busy { .. } => ("Edge sibuk, ulang", "Edge busy, retrying"),
            },
            Text::Refused(r) => match r {
                Refusal::UnknownDevice => ("Kiosk tak dikenal", "Unknown kiosk"),
                Refusal::Revoked => ("Kiosk dicabut", "Kiosk revoked"),
                Refusal::Version => ("Perbarui firmware", "Update firmware"),
                Refusal::Protocol => ("Galat protokol", "Protocol error"),
                Refusal::RateLimited { .. } => ("Terlalu sering", "Too many attempts"),
            },
            Text::Food(f) => match f {
                FoodType::PreparedMeals => ("Makanan", "Meals"),
                FoodType::Bakery => ("Roti", "Bakery"),
                FoodType::Produce => ("Sayur", "Produce"),
                FoodType::Dairy => ("Susu", "Dairy"),
                FoodType::MeatFish => ("Daging", "Meat"),
                FoodType::DryGoods => ("Sembako", "Dry food"),
                FoodType::Frozen => ("Beku", "Frozen"),
            },
        }
    }

    pub const fn get(self, lang: Language) -> &'static str {
        let (id, en) = self.pair();
        match lang {
            Language::Indonesian => id,
            Language::English => en,
        }
    }
}
