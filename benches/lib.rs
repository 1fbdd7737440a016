//! Benchmarks for the workspace. This library holds the shared corpus generators.
//!
//! - `cargo bench -p b24-benches --bench decode`: the `b24-events` decoder (see BENCHMARKS.md).
//! - `cargo run -p b24-benches --example corpus -- 256`: prints the decode corpus, one form
//!   body per line (used for the PHP `parse_str` comparison, `benches/php_parse_str.php`).
//! - `examples/decode_loop.rs` and `php_parse_str_count.php`: fixed amounts of work for
//!   instruction counting under `valgrind --tool=callgrind` (noise-free on a shared machine).

use b24_events::{encode, Event, EventKind};
use b24_fixtures::Fixture;

/// The deterministic generator of the corpora (`fastrand` with a fixed seed), so a corpus is
/// the same on every run.
pub type Rng = fastrand::Rng;

fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
    &items[rng.usize(..items.len())]
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
    let ts = 1_773_759_161 + rng.i64(0..=10_000_000);
    let chat_id = rng.i64(100..=99_999);
    let fixture = Fixture::new(EventKind::MessageAdd)
        .member(&format!("{:032x}", rng.u128(..)))
        .token(&format!("{:032x}", rng.u128(..)))
        .access_token(&format!("{:032x}", rng.u128(..)))
        .handler(555)
        .ts(ts);
    let items = (0..messages)
        .map(|_| {
            let mut text = format!("[b]{}:[/b] [br]", pick::<&str>(rng, &OPERATORS));
            for i in 0..rng.u32(1..=3) {
                if i > 0 {
                    text.push_str("[br]");
                }
                text.push_str(pick::<&str>(rng, &PHRASES));
            }
            let mut item = b24_fixtures::item(rng.i64(10_000..=9_999_999), Some(&text), &[]);
            item.im.chat_id = chat_id;
            item.message.user_id = Some(rng.i64(1..=500));
            item.chat.id = Some(format!("channel-{}", rng.u32(1..=9_999)));
            item
        })
        .collect();
    fixture.event_with_items(items)
}

/// `n` MessageAdd events with 1–5 messages each, deterministic for a seed.
pub fn events(n: usize, seed: u64) -> Vec<Event> {
    let mut rng = Rng::with_seed(seed);
    (0..n)
        .map(|_| {
            let messages = rng.usize(1..=5);
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
