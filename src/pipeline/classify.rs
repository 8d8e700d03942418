//! Classify: a decoded frame → its event class, category and symbol. Total: any topic gets a
//! class (`other` for unknown ones, counted by the caller), nothing here can fail or panic.

use std::ops::Range;

use crate::{
    buffer::Droppable,
    event::{Category, Endpoint, EventClass},
    pipeline::decode::Decoded,
    subscriptions::class_of,
};

/// A decoded frame with its routing facts.
#[derive(Debug, Clone)]
pub struct Classified {
    /// The decoded frame.
    pub decoded: Decoded,
    /// Event class (first word of the routing key).
    pub class: EventClass,
    /// The endpoint's category, or the category of a category-scoped private topic.
    pub category: Option<Category>,
    /// Where the instrument (or base coin for option trades) sits in the topic, where the
    /// topic names one (no copy per frame).
    symbol: Option<Range<usize>>,
}

impl Classified {
    /// Instrument (or base coin for option trades) where the topic names one.
    pub fn symbol(&self) -> Option<&str> {
        self.symbol
            .clone()
            .and_then(|r| self.decoded.topic().get(r))
    }
}

impl Droppable for Classified {
    fn must_keep(&self) -> bool {
        self.class.must_keep(self.decoded.frame.endpoint)
    }
}

/// Classifies one decoded frame.
// Inlined into the caller so the frame is not copied into a new place per stage.
#[inline(always)]
pub fn classify(decoded: Decoded) -> Classified {
    let topic = decoded.topic();
    let class = class_of(topic);
    let (category, symbol) = match decoded.frame.endpoint {
        Endpoint::Public(category) => {
            // A byte search: cheaper per frame than a `char` pattern.
            let symbol = topic
                .bytes()
                .rposition(|b| b == b'.')
                .map(|dot| dot + 1..topic.len())
                .filter(|r| !r.is_empty());
            (Some(category), symbol)
        }
        // `order.spot`, `execution.fast.linear`: a later segment may name the category.
        Endpoint::Private => (topic.split('.').skip(1).find_map(|s| s.parse().ok()), None),
    };
    Classified {
        decoded,
        class,
        category,
        symbol,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::decode::{decode, tests::frame};

    struct TestCase {
        endpoint: Endpoint,
        topic: &'static str,
        class: EventClass,
        category: Option<Category>,
        symbol: Option<&'static str>,
    }

    fn case(
        endpoint: Endpoint,
        topic: &'static str,
        class: EventClass,
        category: Option<Category>,
        symbol: Option<&'static str>,
    ) -> TestCase {
        TestCase {
            endpoint,
            topic,
            class,
            category,
            symbol,
        }
    }

    #[test]
    fn every_topic_gets_a_class_category_and_symbol() {
        use Category::*;
        use EventClass::*;
        let (l, o, p) = (
            Endpoint::Public(Linear),
            Endpoint::Public(Option),
            Endpoint::Private,
        );
        let cases = [
            // TC0..: public topics
            case(
                l,
                "publicTrade.BTCUSDT",
                Trades,
                Some(Linear),
                Some("BTCUSDT"),
            ),
            case(o, "publicTrade.BTC", Trades, Some(Option), Some("BTC")),
            case(l, "tickers.BTCUSDT", Tickers, Some(Linear), Some("BTCUSDT")),
            case(
                l,
                "orderbook.50.BTCUSDT",
                Orderbook,
                Some(Linear),
                Some("BTCUSDT"),
            ),
            case(l, "kline.1.BTCUSDT", Klines, Some(Linear), Some("BTCUSDT")),
            case(l, "allLiquidation.X", Liquidations, Some(Linear), Some("X")),
            case(
                l,
                "liquidation.XRPUSD",
                Liquidations,
                Some(Linear),
                Some("XRPUSD"),
            ),
            case(l, "insurance.USDT", Other, Some(Linear), Some("USDT")),
            case(l, "weird", Other, Some(Linear), None),
            case(l, "", Other, Some(Linear), None),
            // private topics
            case(p, "order", Orders, None, None),
            case(p, "order.spot", Orders, Some(Spot), None),
            case(p, "execution", Executions, None, None),
            case(p, "execution.fast", Executions, None, None),
            case(p, "execution.fast.linear", Executions, Some(Linear), None),
            case(p, "position.linear", Positions, Some(Linear), None),
            case(p, "wallet", Balances, None, None),
            case(p, "greeks", Other, None, None),
        ];
        for c in cases {
            let text = format!(r#"{{"topic":"{}","data":{{}}}}"#, c.topic);
            let out = classify(decode(frame(c.endpoint, &text)));
            assert_eq!(out.class, c.class, "{}", c.topic);
            assert_eq!(out.category, c.category, "{}", c.topic);
            assert_eq!(out.symbol(), c.symbol, "{}", c.topic);
        }
    }
}
