//! Benchmarks for the workspace. This library holds the shared corpus generators.
//!
//! - `cargo bench -p b24-benches --bench decode`: the `b24-events` decoder (see BENCHMARKS.md).
//! - `cargo run -p b24-benches --example corpus -- 256`: prints the decode corpus, one form
//!   body per line (used for the PHP `parse_str` comparison, `benches/php_parse_str.php`).
//! - `examples/decode_loop.rs` and `php_parse_str_count.php`: fixed amounts of work for
//!   instruction counting under `valgrind --tool=callgrind` (noise-free on a shared machine).

use b24_events::{
    encode, Auth, Event, EventData, EventKind, ExternalChat, ImRef, MessageBody, MessageItem,
    MessagesData, Secret,
};

/// A small deterministic PRNG (xorshift64*), so the corpus is the same on every run.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (0 is replaced by a fixed non-zero seed).
    pub fn new(seed: u64) -> Self {
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// One element of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range(0, items.len() as u64 - 1) as usize]
    }
}

const OPERATORS: [&str; 5] = [
    "Светлана Иванова",
    "Алексей Смирнов",
    "Мария Кузнецова",
    "Дмитрий Попов",
    "Ольга Соколова",
];

const PHRASES: [&str; 10] = [
    "Добрый день!",
    "Спасибо за обращение, ваш заказ уже в пути.",
    "Подскажите, пожалуйста, номер договора.",
    "[b]Важно:[/b] доставка завтра с 10:00 до 14:00.",
    "Ссылка на оплату: [URL=https://example.ru/pay/12345]оплатить[/URL]",
    "[i]Мы работаем ежедневно с 9 до 21 часа.[/i]",
    "Уточню у коллег и вернусь с ответом в течение часа.",
    "Ваша заявка №4821 принята в работу.",
    "Можно ли перенести встречу на четверг?",
    "Если остались вопросы — пишите, будем рады помочь.",
];

/// A realistic MessageAdd event with `messages` messages (Cyrillic text with BB-codes and the
/// operator-name prefix Bitrix24 adds, like fixture F1).
pub fn message_add(rng: &mut Rng, messages: usize) -> Event {
    let ts = 1_773_759_161 + rng.range(0, 10_000_000) as i64;
    let chat_id = rng.range(100, 99_999) as i64;
    let items = (0..messages)
        .map(|_| {
            let mut text = format!("[b]{}:[/b] [br]", rng.pick::<&str>(&OPERATORS));
            for i in 0..rng.range(1, 3) {
                if i > 0 {
                    text.push_str("[br]");
                }
                let phrase = rng.pick::<&str>(&PHRASES);
                text.push_str(phrase);
            }
            MessageItem {
                im: ImRef {
                    chat_id,
                    message_id: rng.range(10_000, 9_999_999) as i64,
                },
                message: MessageBody {
                    user_id: Some(rng.range(1, 500) as i64),
                    text: Some(text),
                    ids: vec![],
                    files: vec![],
                },
                chat: ExternalChat {
                    id: Some(format!("channel-{}", rng.range(1, 9_999))),
                },
            }
        })
        .collect();
    Event {
        kind: EventKind::MessageAdd,
        handler_id: Some(555),
        ts: Some(ts),
        auth: Auth {
            member_id: format!("{:032x}", rng.next_u64() as u128 * 0x1_0000_0001),
            domain: Some("some-domain.bitrix24.ru".into()),
            client_endpoint: Some("https://some-domain.bitrix24.ru/rest/".into()),
            server_endpoint: Some("https://oauth.bitrix24.tech/rest/".into()),
            status: Some("F".into()),
            scope: vec!["imconnector".into(), "imopenlines".into()],
            user_id: Some(27),
            expires: Some(ts + 3600),
            expires_in: Some(3600),
            access_token: Some(Secret::new(format!(
                "{:016x}{:016x}",
                rng.next_u64(),
                rng.next_u64()
            ))),
            refresh_token: None,
            application_token: Some(Secret::new(format!("{:032x}", rng.next_u64() as u128))),
        },
        data: EventData::Messages(MessagesData {
            connector: Some("myconnector".into()),
            line: Some(107),
            messages: items,
        }),
    }
}

/// `n` MessageAdd events with 1–5 messages each, deterministic for a seed.
pub fn events(n: usize, seed: u64) -> Vec<Event> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let messages = rng.range(1, 5) as usize;
            message_add(&mut rng, messages)
        })
        .collect()
}

/// The corpus as form bodies, exactly as PHP's `http_build_query` would send them.
pub fn form_corpus(n: usize, seed: u64) -> Vec<String> {
    events(n, seed)
        .iter()
        .map(|e| encode::php_form(&encode::wire_json(e)))
        .collect()
}

/// The corpus as JSON bodies.
pub fn json_corpus(n: usize, seed: u64) -> Vec<String> {
    events(n, seed)
        .iter()
        .map(|e| encode::wire_json(e).to_string())
        .collect()
}

/// The seed every benchmark uses.
pub const SEED: u64 = 20_260_301;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_decodes_back() {
        let events = events(64, SEED);
        for (e, body) in events.iter().zip(form_corpus(64, SEED)) {
            assert_eq!(&b24_events::decode(body.as_bytes(), None).unwrap(), e);
        }
    }
}
